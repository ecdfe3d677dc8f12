//! OpenBLAS for the CPU backend's f32 products (cargo feature `blas`): `cblas_sgemm` through
//! `cblas-sys`, linked against the system's libopenblas, run single-threaded inside sinter's tiles.

// Threading: OpenBLAS is told to use one thread, and `matmul` cuts each product into tiles that
// run on the rayon pool (the CPU backend's N threads). So there is one thread pool, never a
// threaded BLAS inside a rayon task, and no OpenBLAS workers spinning while the next node's
// rayon tasks want the cores. f64 (gradient checks) stays on the `gemm` crate.

use cblas_sys::{cblas_sgemm, CBLAS_LAYOUT, CBLAS_TRANSPOSE};
use std::any::TypeId;
use std::ffi::{c_char, c_int, CStr};
use std::sync::Once;

// The two OpenBLAS extensions sinter calls; `#[link]` here also links the `cblas_sgemm` that
// cblas-sys declares. Debian/Ubuntu: libopenblas-dev; elsewhere, point the linker at the
// library (`RUSTFLAGS="-L /opt/homebrew/opt/openblas/lib"`).
#[link(name = "openblas")]
extern "C" {
    fn openblas_set_num_threads(threads: c_int);
    fn openblas_get_config() -> *const c_char;
}

static SINGLE_THREADED: Once = Once::new();

/// OpenBLAS's description of itself (`OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Cooperlake
/// MAX_THREADS=64`): version, build options and the kernels it chose for this CPU.
pub(super) fn describe() -> String {
    // SAFETY: openblas_get_config returns a pointer to a static NUL-terminated string.
    let config = unsafe { CStr::from_ptr(openblas_get_config()) };
    format!(
        "{} (single-threaded tiles)",
        config.to_string_lossy().trim()
    )
}

/// The operands of a tile as f32 when `T` is f32, the type OpenBLAS runs here.
pub(super) fn f32_operands<'a, T: 'static>(
    a: &'a [T],
    b: &'a [T],
    c: *mut T,
) -> Option<(&'a [f32], &'a [f32], *mut f32)> {
    if TypeId::of::<T>() != TypeId::of::<f32>() {
        return None;
    }
    // SAFETY: T is f32, so the slices and the pointer are reinterpreted as themselves.
    unsafe {
        Some((
            std::slice::from_raw_parts(a.as_ptr().cast(), a.len()),
            std::slice::from_raw_parts(b.as_ptr().cast(), b.len()),
            c.cast(),
        ))
    }
}

/// c = op(a)·op(b) for an m × n tile of a row-major C whose rows are `ldc` apart, on this
/// thread: `a` starts at the tile's first row of op(A) (rows `lda` apart in memory, or columns
/// when `trans_a`), `b` at its first column of op(B) (likewise with `ldb`).
///
/// # Safety
/// `c` must point at m rows of n writable values, `ldc` apart, that no one else touches meanwhile.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn sgemm_tile(
    trans_a: bool,
    trans_b: bool,
    (m, n, k): (usize, usize, usize),
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    let reach = |outer: usize, ld: usize, inner: usize| (outer - 1) * ld + inner;
    let (a_need, b_need) = (
        if trans_a {
            reach(k, lda, m)
        } else {
            reach(m, lda, k)
        },
        if trans_b {
            reach(n, ldb, k)
        } else {
            reach(k, ldb, n)
        },
    );
    assert!(
        a.len() >= a_need && b.len() >= b_need && ldc >= n,
        "sgemm_tile: [{m}, {k}]·[{k}, {n}] reaches past its operands"
    );
    let int = |x: usize| c_int::try_from(x).expect("matmul: a dimension exceeds BLAS's 32-bit int");
    let op = |t: bool| {
        if t {
            CBLAS_TRANSPOSE::CblasTrans
        } else {
            CBLAS_TRANSPOSE::CblasNoTrans
        }
    };
    // SAFETY: a call into OpenBLAS's initialized library with a plain int.
    SINGLE_THREADED.call_once(|| unsafe { openblas_set_num_threads(1) });
    // SAFETY: the assert keeps every value the leading dimensions reach inside `a` and `b`; C is
    // the caller's. beta = 0, so C is only written.
    cblas_sgemm(
        CBLAS_LAYOUT::CblasRowMajor,
        op(trans_a),
        op(trans_b),
        int(m),
        int(n),
        int(k),
        1.0,
        a.as_ptr(),
        int(lda),
        b.as_ptr(),
        int(ldb),
        0.0,
        c,
        int(ldc),
    );
}
