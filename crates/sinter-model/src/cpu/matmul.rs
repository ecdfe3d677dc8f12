//! CPU matrix products: the CPU backend's GEMM and the reference the WGSL matmul kernels are tested
//! against. Each product is cut into tiles of C that run on the rayon pool, one single-threaded
//! GEMM per tile: the `gemm` crate, or with the `blas` feature OpenBLAS for f32 (`cpu::blas`).

use super::elementwise::{epilogue_row, RowBias};
use super::Real;
use gemm::Parallelism;
use rayon::prelude::*;
use sinter_ops::elementwise::UnaryOp;
use sinter_ops::matmul::MatmulShape;
use std::ops::Range;

/// Below this many multiply-adds a product runs on one thread: splitting it costs more than it saves.
const PARALLEL_MIN_MACS: usize = 1 << 18;

/// A tile is cut no thinner than this many rows or columns, so that the GEMM inside it still
/// runs whole register blocks (AVX-512 `gemm` blocks are 48 rows of f32, OpenBLAS's 16).
const MIN_TILE_SIDE: usize = 32;

/// The GEMM that runs the f32 products on this build and this CPU, for reports and the
/// ceilings cache (a ceiling measured with one library does not hold for another):
/// `gemm crate (avx512f)`, or with the `blas` feature OpenBLAS's own configuration string.
pub fn gemm_library() -> String {
    #[cfg(feature = "blas")]
    {
        super::blas::describe()
    }
    #[cfg(not(feature = "blas"))]
    {
        format!("gemm crate ({})", gemm_isa())
    }
}

/// The library that runs a product's f32 tiles. f64 always runs on the `gemm` crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gemm {
    /// The `gemm` crate (the default build).
    #[cfg_attr(all(feature = "blas", not(test)), allow(dead_code))]
    Crate,
    /// OpenBLAS's `cblas_sgemm` (the `blas` feature).
    #[cfg(feature = "blas")]
    OpenBlas,
}

impl Gemm {
    /// The library this build runs its f32 products on.
    #[cfg(feature = "blas")]
    const BUILT: Gemm = Gemm::OpenBlas;
    /// The library this build runs its f32 products on.
    #[cfg(not(feature = "blas"))]
    const BUILT: Gemm = Gemm::Crate;

    /// Every library this build can run f32 products on.
    #[cfg(test)]
    const ALL: &'static [Gemm] = &[
        Gemm::Crate,
        #[cfg(feature = "blas")]
        Gemm::OpenBlas,
    ];
}

/// The instruction set the `gemm` crate picks at run time (it checks the CPU the same way).
#[cfg_attr(feature = "blas", allow(dead_code))]
fn gemm_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "fma"
        } else {
            "scalar"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "neon"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "portable"
    }
}

/// C = op(A)·op(B) for every batch item, overwriting C (same semantics as the WGSL kernels).
///
/// Panics with the shape when it is invalid or a slice is too short: callers check shapes when
/// the graph is built, so reaching here with a bad one is a bug.
// a: [batch | 1, m, k] (stored [.., k, m] when trans_a), b: [batch | 1, k, n] (stored [.., n, k]
// when trans_b), c: [batch, m, n]
pub fn matmul<T: Real>(a: &[T], b: &[T], c: &mut [T], s: &MatmulShape) {
    matmul_epilogue(a, b, None, None, c, s)
}

/// C = activation(op(A)·op(B) + bias), the bias one value per column of C and both optional:
/// the planner's fused product (`fuse.rs`), the epilogue applied to each tile of C as soon as
/// its product ends, while the tile is still in cache.
// a, b, c as in `matmul`; bias: [n]
pub fn matmul_epilogue<T: Real>(
    a: &[T],
    b: &[T],
    bias: Option<&[T]>,
    activation: Option<UnaryOp>,
    c: &mut [T],
    s: &MatmulShape,
) {
    matmul_epilogue_on(Gemm::BUILT, a, b, bias, activation, c, s)
}

/// `matmul_epilogue` with its f32 tiles on `library` (the tests check every library a build has).
fn matmul_epilogue_on<T: Real>(
    library: Gemm,
    a: &[T],
    b: &[T],
    bias: Option<&[T]>,
    activation: Option<UnaryOp>,
    c: &mut [T],
    s: &MatmulShape,
) {
    if let Err(e) = s.check() {
        panic!("matmul: {e}");
    }
    assert!(
        a.len() >= s.a_len() && b.len() >= s.b_len() && c.len() >= s.c_len(),
        "matmul: {s}: slices hold a {}, b {}, c {} values but the shape needs {}, {}, {}",
        a.len(),
        b.len(),
        c.len(),
        s.a_len(),
        s.b_len(),
        s.c_len()
    );
    if let Some(bias) = bias {
        assert!(
            bias.len() >= s.n,
            "matmul: {} bias values for {s}",
            bias.len()
        );
    }
    let out = OutPtr(c.as_mut_ptr());
    let run = |t: &Tile| {
        // SAFETY: the tiles of `tiles` cover C's items without overlapping, each is written by
        // one task only, and `c` (borrowed mutably for this whole call) holds every item.
        unsafe { tile_product(library, a, b, out, s, t) };
        if bias.is_some() || activation.is_some() {
            let bias = match bias {
                Some(b) => RowBias::PerElement(&b[t.cols.clone()]),
                None => RowBias::None,
            };
            for r in t.rows.clone() {
                // SAFETY: as above: row r of this tile belongs to this task alone.
                let row = unsafe { out.tile_row(s, t, r) };
                epilogue_row(row, bias, activation);
            }
        }
    };
    let tiles = tiles(s, rayon::current_num_threads());
    if tiles.len() > 1 {
        tiles.par_iter().for_each(run);
    } else {
        tiles.iter().for_each(run);
    }
}

/// The output of a product, shared by the tasks that each write their own tile of it.
#[derive(Clone, Copy)]
struct OutPtr<T>(*mut T);

// SAFETY: the tasks that share an `OutPtr` write disjoint tiles (see `matmul_epilogue`).
unsafe impl<T: Send> Send for OutPtr<T> {}
unsafe impl<T: Send> Sync for OutPtr<T> {}

impl<T> OutPtr<T> {
    /// The first element of tile `t` (row `t.rows.start`, column `t.cols.start` of its item).
    fn tile_start(self, s: &MatmulShape, t: &Tile) -> *mut T {
        self.0
            .wrapping_add(t.item * s.m * s.n + t.rows.start * s.n + t.cols.start)
    }

    /// Row `r` of tile `t`: `t.cols.len()` values.
    ///
    /// # Safety
    /// No one else may read or write that part of C while the slice lives.
    unsafe fn tile_row<'a>(self, s: &MatmulShape, t: &Tile, r: usize) -> &'a mut [T] {
        let first = self.0.add(t.item * s.m * s.n + r * s.n + t.cols.start);
        std::slice::from_raw_parts_mut(first, t.cols.len())
    }
}

/// One task's share of a product: rows `rows` and columns `cols` of batch item `item` of C.
#[derive(Clone, Debug, PartialEq)]
struct Tile {
    item: usize,
    rows: Range<usize>,
    cols: Range<usize>,
}

/// Cuts the product `s` into tiles for `threads` threads: one tile per item when the items are
/// enough to keep the threads busy (or the product is too small to split), else each item in a
/// grid of tiles. The grid is chosen to pack the least: a tile reads its rows of A and its
/// columns of B, so a pr × pc grid packs pc·m·k + pr·k·n values; tiles keep at least
/// `MIN_TILE_SIDE` rows and columns. The cut depends only on the shape and the thread count,
/// so results are reproducible run to run.
fn tiles(s: &MatmulShape, threads: usize) -> Vec<Tile> {
    let macs = s.m * s.n * s.k;
    let per_item = if threads <= 1 || s.batch >= threads || macs * s.batch < PARALLEL_MIN_MACS {
        1
    } else {
        threads
            .div_ceil(s.batch)
            .min(macs.div_ceil(PARALLEL_MIN_MACS / 4))
    };
    let (pr, pc) = grid(s.m, s.n, per_item);
    let cuts = |len: usize, parts: usize| -> Vec<Range<usize>> {
        (0..parts)
            .map(|i| len * i / parts..len * (i + 1) / parts)
            .collect()
    };
    let (row_cuts, col_cuts) = (cuts(s.m, pr), cuts(s.n, pc));
    let mut out = Vec::with_capacity(s.batch * pr * pc);
    for item in 0..s.batch {
        for rows in &row_cuts {
            for cols in &col_cuts {
                out.push(Tile {
                    item,
                    rows: rows.clone(),
                    cols: cols.clone(),
                });
            }
        }
    }
    out
}

/// The (row parts, column parts) grid of at most `parts` tiles for an m × n output that packs
/// the least (see `tiles`), with no tile thinner than `MIN_TILE_SIDE` unless it is not cut.
fn grid(m: usize, n: usize, parts: usize) -> (usize, usize) {
    for p in (1..=parts).rev() {
        let best = (1..=p)
            .filter(|pr| p % pr == 0)
            .map(|pr| (pr, p / pr))
            .filter(|&(pr, pc)| {
                (pr == 1 || m / pr >= MIN_TILE_SIDE) && (pc == 1 || n / pc >= MIN_TILE_SIDE)
            })
            .min_by_key(|&(pr, pc)| pc * m + pr * n);
        if let Some(g) = best {
            return g;
        }
    }
    (1, 1)
}

/// C's tile `t` = op(A)·op(B) restricted to the tile's rows and columns, on this thread, with
/// f32 products on `library`.
///
/// # Safety
/// `out` must point at C (`s.c_len()` values) and no one else may touch tile `t` meanwhile.
#[cfg_attr(not(feature = "blas"), allow(unused_variables))]
unsafe fn tile_product<T: Real>(
    library: Gemm,
    a: &[T],
    b: &[T],
    out: OutPtr<T>,
    s: &MatmulShape,
    t: &Tile,
) {
    let a = &a[t.item * s.a_batch_stride..][..s.m * s.k];
    let b = &b[t.item * s.b_batch_stride..][..s.k * s.n];
    // The tile's first row of op(A) and first column of op(B) as they lie in memory.
    let a_first = if s.trans_a {
        t.rows.start
    } else {
        t.rows.start * s.k
    };
    let b_first = if s.trans_b {
        t.cols.start * s.k
    } else {
        t.cols.start
    };
    let (m, n) = (t.rows.len(), t.cols.len());
    let c = out.tile_start(s, t);
    #[cfg(feature = "blas")]
    if let (Gemm::OpenBlas, Some((a, b, c))) = (library, super::blas::f32_operands(a, b, c)) {
        let lda = if s.trans_a { s.m } else { s.k };
        let ldb = if s.trans_b { s.k } else { s.n };
        // SAFETY: C's tile is the caller's, as for gemm below.
        super::blas::sgemm_tile(
            s.trans_a,
            s.trans_b,
            (m, n, s.k),
            &a[a_first..],
            lda,
            &b[b_first..],
            ldb,
            c,
            s.n,
        );
        return;
    }
    // Element strides (row, column) of op(A) and op(B) as they lie in memory.
    let (a_rs, a_cs) = if s.trans_a { (1, s.m) } else { (s.k, 1) };
    let (b_rs, b_cs) = if s.trans_b { (1, s.k) } else { (s.n, 1) };
    // SAFETY: a and b hold one item's m·k and k·n values, and every (row, column) of the tile
    // that the strides reach lies inside them; C is the caller's. `gemm` dispatches on the
    // element type and supports f32 and f64, the only `Real` types. With read_dst false C is
    // only written; it computes dst = alpha·dst + beta·lhs·rhs, so beta = 1 and alpha is unused.
    gemm::gemm(
        m,
        n,
        s.k,
        c,
        1,
        s.n as isize,
        false,
        a[a_first..].as_ptr(),
        a_cs as isize,
        a_rs as isize,
        b[b_first..].as_ptr(),
        b_cs as isize,
        b_rs as isize,
        T::zero(),
        T::one(),
        false,
        false,
        false,
        Parallelism::None,
    );
}

/// A matrix in memory: its first element and the element strides between rows and columns
/// (a transpose is the same memory with the strides swapped).
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a, T> {
    pub data: &'a [T],
    pub row_stride: usize,
    pub col_stride: usize,
}

/// c = beta·a·b (or c += beta·a·b when `accumulate`) on one thread, for a [m, k] and b [k, n]
/// read through their strides and c [m, n] row-major: the small products of fused kernels
/// (attention's score tiles), which run inside a rayon task of their own.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_strided<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<T>,
    b: Strided<T>,
    c: &mut [T],
    beta: T,
    accumulate: bool,
) {
    let last = |x: &Strided<T>, rows: usize, cols: usize| {
        (rows - 1) * x.row_stride + (cols - 1) * x.col_stride
    };
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= m * n
            && (k == 0 || (a.data.len() > last(&a, m, k) && b.data.len() > last(&b, k, n))),
        "gemm_strided: [{m}, {k}]·[{k}, {n}] reaches past its slices"
    );
    // SAFETY: the assert above keeps every (row, column) the strides reach inside the slices;
    // `gemm` supports f32 and f64, the only `Real` types. It computes
    // dst = alpha·dst + beta·lhs·rhs, reading dst only when `accumulate`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The product by its definition, in f64, for the checks below.
    fn naive(a: &[f64], b: &[f64], s: &MatmulShape) -> Vec<f64> {
        let mut c = vec![0.0; s.c_len()];
        for z in 0..s.batch {
            for i in 0..s.m {
                for j in 0..s.n {
                    let mut acc = 0.0;
                    for p in 0..s.k {
                        let av = if s.trans_a {
                            a[z * s.a_batch_stride + p * s.m + i]
                        } else {
                            a[z * s.a_batch_stride + i * s.k + p]
                        };
                        let bv = if s.trans_b {
                            b[z * s.b_batch_stride + j * s.k + p]
                        } else {
                            b[z * s.b_batch_stride + p * s.n + j]
                        };
                        acc += av * bv;
                    }
                    c[z * s.m * s.n + i * s.n + j] = acc;
                }
            }
        }
        c
    }

    #[test]
    fn f64_matches_definition_for_every_transpose_and_broadcast() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for bcast in 0..3 {
                let mut s = MatmulShape::new(3, 5, 7, 4).with_trans(ta, tb);
                if bcast == 1 {
                    s = s.broadcast_a();
                } else if bcast == 2 {
                    s = s.broadcast_b();
                }
                let a: Vec<f64> = (0..s.a_len()).map(|i| (i as f64 * 0.37).sin()).collect();
                let b: Vec<f64> = (0..s.b_len()).map(|i| (i as f64 * 0.61).cos()).collect();
                let mut c = vec![f64::NAN; s.c_len()];
                matmul(&a, &b, &mut c, &s);
                let want = naive(&a, &b, &s);
                for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                    assert!((g - w).abs() < 1e-12, "{s}: index {i}: got {g}, want {w}");
                }
            }
        }
    }

    /// The f32 tolerance of the WGSL matmul tests (`tests/kernels_matmul.rs`), which compare
    /// against the same f64 reference: atol 1e-4 at k = 64, scaled by √(k/64), plus rtol 1e-4.
    /// f32 sums of k products in [−1, 1] err by about 2⁻²⁴·k/4, far inside it, while a wrong
    /// tile edge or a missed k-step errs by 0.1 or more.
    fn f32_tolerance(k: usize, want: f64) -> f64 {
        1e-4 * (k as f64 / 64.0).sqrt().max(1.0) + 1e-4 * want.abs()
    }

    #[test]
    fn f32_matches_the_f64_reference_for_tiled_transposed_batched_products_and_epilogues() {
        // Odd shapes, the char-transformer's skinny ones (cut into tiles over the threads),
        // broadcast batches, every transpose, with and without bias and activation.
        let cases = [
            (1, 3, 5, 7),
            (1, 130, 67, 300),
            (1, 2048, 65, 128),
            (1, 65, 128, 2048),
            (1, 128, 128, 2048),
            (3, 70, 90, 40),
            (2, 257, 33, 129),
        ];
        let mut checked = 0;
        for (batch, m, n, k) in cases {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for variant in 0..3 {
                    let mut s = MatmulShape::new(batch, m, n, k).with_trans(ta, tb);
                    if batch > 1 && variant == 1 {
                        s = s.broadcast_a();
                    } else if batch > 1 && variant == 2 {
                        s = s.broadcast_b();
                    }
                    let a: Vec<f64> = (0..s.a_len()).map(|i| (i as f64 * 0.37).sin()).collect();
                    let b: Vec<f64> = (0..s.b_len()).map(|i| (i as f64 * 0.61).cos()).collect();
                    let bias: Vec<f64> = (0..n).map(|j| (j as f64 * 0.23).sin()).collect();
                    let (bias, act) = match variant {
                        0 => (None, None),
                        1 => (Some(&bias[..]), Some(UnaryOp::Relu)),
                        _ => (Some(&bias[..]), Some(UnaryOp::Gelu)),
                    };
                    let mut want = naive(&a, &b, &s);
                    for row in want.chunks_mut(n) {
                        for (j, v) in row.iter_mut().enumerate() {
                            let bj = bias.map(|b| b[j]);
                            *v = crate::cpu::elementwise::epilogue_value(*v, bj, act);
                        }
                    }
                    let f32s = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<f32>>();
                    let bias32 = bias.map(f32s);
                    for &library in Gemm::ALL {
                        let mut got = vec![f32::NAN; s.c_len()];
                        let (a32, b32) = (f32s(&a), f32s(&b));
                        let bias32 = bias32.as_deref();
                        matmul_epilogue_on(library, &a32, &b32, bias32, act, &mut got, &s);
                        for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                            let err = (g as f64 - w).abs();
                            assert!(
                                err <= f32_tolerance(k, w),
                                "{library:?} {s} {act:?}: index {i}: got {g}, want {w} (error {err:e})"
                            );
                        }
                        checked += got.len();
                    }
                }
            }
        }
        assert!(
            checked > 1_000_000 * Gemm::ALL.len(),
            "only {checked} values checked"
        );
    }

    #[test]
    fn tiles_cover_every_output_once_for_any_thread_count() {
        for (batch, m, n, k) in [(1, 2048, 128, 128), (1, 65, 128, 2048), (4, 50, 70, 300)] {
            let s = MatmulShape::new(batch, m, n, k);
            for threads in [1, 2, 3, 8, 16] {
                let mut hits = vec![0u8; s.c_len()];
                for t in tiles(&s, threads) {
                    for r in t.rows.clone() {
                        for c in t.cols.clone() {
                            hits[t.item * m * n + r * n + c] += 1;
                        }
                    }
                }
                assert!(hits.iter().all(|&h| h == 1), "{s} on {threads} threads");
            }
        }
    }

    #[test]
    fn tiles_cut_the_side_that_packs_least_and_leave_small_products_whole() {
        let cut = |batch, m, n, k, threads| {
            let t = tiles(&MatmulShape::new(batch, m, n, k), threads);
            (t.len(), t[0].rows.len(), t[0].cols.len())
        };
        // Tall C: split its rows (each tile packs all of the small B, half of A).
        assert_eq!(cut(1, 2048, 128, 128, 2), (2, 1024, 128));
        // The head's weight gradient [65, 128]: split the wider side.
        assert_eq!(cut(1, 65, 128, 2048, 2), (2, 65, 64));
        // Sixteen threads on 1024²: a 4 × 4 grid.
        assert_eq!(cut(1, 1024, 1024, 1024, 16), (16, 256, 256));
        // No tile thinner than MIN_TILE_SIDE: 64 rows make two tiles, not sixteen.
        assert_eq!(cut(1, 64, 40, 4096, 16), (2, 32, 40));
        // Too small to be worth a second thread.
        assert_eq!(cut(1, 32, 32, 32, 8), (1, 32, 32));
        // Enough batch items: one tile each.
        assert_eq!(cut(8, 256, 256, 256, 4), (8, 256, 256));
    }

    #[test]
    fn the_library_named_is_the_one_linked() {
        let name = gemm_library();
        if cfg!(feature = "blas") {
            assert!(name.starts_with("OpenBLAS "), "{name}");
        } else {
            assert!(name.starts_with("gemm crate ("), "{name}");
        }
    }

    #[test]
    #[should_panic(expected = "matmul")]
    fn zero_axis_panics_naming_the_op() {
        let s = MatmulShape::new(1, 0, 2, 2);
        matmul::<f32>(&[], &[0.0; 4], &mut [], &s);
    }
}
