//! CPU embedding lookup and its gradient (a scatter-add that sums repeated tokens in token order).
//! Same semantics as `shaders/embedding.wgsl`, including NaN rows for ids that are not a table row.

use super::simd::vectorized;
use super::Real;
use rayon::prelude::*;
use sinter_ops::embedding::EmbeddingShape;

/// Below this many elements a plain loop beats handing work to rayon.
const PAR_MIN: usize = 1 << 15;

/// The row a stored id names, or None when it is not an integer in [0, vocab).
pub fn row_of<T: Real>(id: T, vocab: usize) -> Option<usize> {
    (id >= T::zero() && id < T::of(vocab as f64) && id == id.floor())
        .then(|| id.to_usize().expect("checked range"))
}

fn check(op: &str, shape: &EmbeddingShape, bufs: &[(&str, usize, usize)]) {
    let EmbeddingShape { tokens, vocab, dim } = *shape;
    assert!(
        tokens > 0 && vocab > 0 && dim > 0,
        "{op}: zero-sized dim in ids [{tokens}], table [{vocab}, {dim}]"
    );
    for &(what, len, want) in bufs {
        assert_eq!(
            len, want,
            "{op}: {what} has {len} values for ids [{tokens}], table [{vocab}, {dim}]"
        );
    }
}

/// `out[t] = table[ids[t]]`; the row of an id that is not an integer in `[0, vocab)` is NaN.
// ids: [tokens], table: [vocab, dim], out: [tokens, dim]
pub fn embedding<T: Real>(ids: &[T], table: &[T], out: &mut [T], shape: &EmbeddingShape) {
    let EmbeddingShape { tokens, vocab, dim } = *shape;
    check(
        "embedding",
        shape,
        &[
            ("ids", ids.len(), tokens),
            ("table", table.len(), vocab * dim),
            ("out", out.len(), tokens * dim),
        ],
    );
    let row = |(o, &id): (&mut [T], &T)| match row_of(id, vocab) {
        Some(v) => o.copy_from_slice(&table[v * dim..(v + 1) * dim]),
        None => o.fill(T::nan()),
    };
    if out.len() < PAR_MIN {
        out.chunks_mut(dim).zip(ids).for_each(row);
    } else {
        out.par_chunks_mut(dim).zip(ids).for_each(row);
    }
}

/// `dtable[v] = Σ_{t: ids[t] == v} dout[t]`, summed in token order; invalid ids add nothing.
// ids: [tokens], dout: [tokens, dim], dtable: [vocab, dim]
pub fn embedding_grad<T: Real>(ids: &[T], dout: &[T], dtable: &mut [T], shape: &EmbeddingShape) {
    let EmbeddingShape { tokens, vocab, dim } = *shape;
    check(
        "embedding_grad",
        shape,
        &[
            ("ids", ids.len(), tokens),
            ("dout", dout.len(), tokens * dim),
            ("dtable", dtable.len(), vocab * dim),
        ],
    );
    // The tokens of each row, in order: rows are then independent and can be filled in parallel.
    let mut uses: Vec<Vec<usize>> = vec![Vec::new(); vocab];
    for (t, &id) in ids.iter().enumerate() {
        if let Some(v) = row_of(id, vocab) {
            uses[v].push(t);
        }
    }
    let row = |(d, ts): (&mut [T], &Vec<usize>)| {
        d.fill(T::zero());
        vectorized(
            #[inline(always)]
            || {
                for &t in ts {
                    for (d, &g) in d.iter_mut().zip(&dout[t * dim..(t + 1) * dim]) {
                        *d += g;
                    }
                }
            },
        )
    };
    if dout.len() + dtable.len() < PAR_MIN {
        dtable.chunks_mut(dim).zip(&uses).for_each(row);
    } else {
        dtable.par_chunks_mut(dim).zip(&uses).for_each(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_tokens_accumulate_and_bad_ids_are_nan() {
        let shape = EmbeddingShape {
            tokens: 5,
            vocab: 3,
            dim: 2,
        };
        let table = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let ids = [2.0, 0.0, 2.0, 3.0, -1.0];
        let mut out = [0.0f64; 10];
        embedding(&ids, &table, &mut out, &shape);
        assert_eq!(&out[..6], &[5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
        assert!(out[6..].iter().all(|v| v.is_nan()));
        let dout = [1.0, 10.0, 2.0, 20.0, 3.0, 30.0, 100.0, 100.0, 100.0, 100.0];
        let mut dtable = [7.0f64; 6];
        embedding_grad(&ids, &dout, &mut dtable, &shape);
        assert_eq!(dtable, [2.0, 20.0, 0.0, 0.0, 4.0, 40.0]);
    }

    #[test]
    fn row_of_rejects_non_integers_and_out_of_range() {
        assert_eq!(row_of(0.0f32, 4), Some(0));
        assert_eq!(row_of(3.0f32, 4), Some(3));
        for bad in [4.0f32, -1.0, 2.5, f32::NAN, f32::INFINITY, -0.5] {
            assert_eq!(row_of(bad, 4), None, "{bad}");
        }
    }
}
