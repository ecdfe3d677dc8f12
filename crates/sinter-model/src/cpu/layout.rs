//! CPU strided copy, the one kernel of the layout ops (permute, slice, concat): a region of one
//! buffer copied to a region of another. Same addressing as `strided_copy` in `shaders/elementwise.wgsl`.

use super::Real;
use sinter_ops::layout::StridedCopy;

/// The last element `copy` touches from `offset` with `strides` (its region is not empty).
fn last_index(copy: &StridedCopy, offset: usize, strides: &[usize]) -> usize {
    offset
        + copy
            .shape
            .iter()
            .zip(strides)
            .map(|(&d, &s)| (d - 1) * s)
            .sum::<usize>()
}

/// `dst[region] = src[region]` as `copy` addresses them; each part of a concatenation is one call.
pub fn strided_copy<T: Real>(src: &[T], dst: &mut [T], copy: &StridedCopy) {
    let StridedCopy {
        shape,
        src_offset,
        src_strides,
        dst_offset,
        dst_strides,
    } = copy;
    let rank = shape.len();
    assert!(
        src_strides.len() == rank && dst_strides.len() == rank,
        "strided_copy: strides {src_strides:?} and {dst_strides:?} for region {shape:?}"
    );
    if shape.contains(&0) {
        return;
    }
    assert!(
        last_index(copy, *src_offset, src_strides) < src.len()
            && last_index(copy, *dst_offset, dst_strides) < dst.len(),
        "strided_copy: {copy:?} reaches past a source of {} or a destination of {} elements",
        src.len(),
        dst.len()
    );
    if rank == 0 {
        dst[*dst_offset] = src[*src_offset];
        return;
    }
    // Rows along the last axis; the outer coordinates advance like an odometer.
    let (inner, si, di) = (
        shape[rank - 1],
        src_strides[rank - 1],
        dst_strides[rank - 1],
    );
    let rows: usize = shape[..rank - 1].iter().product();
    let mut coord = vec![0usize; rank - 1];
    let (mut s, mut d) = (*src_offset, *dst_offset);
    for _ in 0..rows {
        if si == 1 && di == 1 {
            dst[d..d + inner].copy_from_slice(&src[s..s + inner]);
        } else {
            for j in 0..inner {
                dst[d + j * di] = src[s + j * si];
            }
        }
        for k in (0..rank - 1).rev() {
            coord[k] += 1;
            s += src_strides[k];
            d += dst_strides[k];
            if coord[k] < shape[k] {
                break;
            }
            s -= shape[k] * src_strides[k];
            d -= shape[k] * dst_strides[k];
            coord[k] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_slice_and_concat_move_the_right_elements() {
        // x: [2, 3] = 0..6; xᵀ: [3, 2]
        let x: Vec<f32> = (0..6).map(|v| v as f32).collect();
        let mut y = vec![0.0f32; 6];
        strided_copy(&x, &mut y, &StridedCopy::permute(&[2, 3], &[1, 0]));
        assert_eq!(y, vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        // columns 1..3 of x
        let mut s = vec![0.0f32; 4];
        strided_copy(&x, &mut s, &StridedCopy::slice(&[2, 3], 1, 1, 2));
        assert_eq!(s, vec![1.0, 2.0, 4.0, 5.0]);
        // [x | s] along axis 1: [2, 5]
        let mut c = vec![0.0f32; 10];
        strided_copy(
            &x,
            &mut c,
            &StridedCopy::concat_part(&[2, 5], 1, 0, &[2, 3]),
        );
        strided_copy(
            &s,
            &mut c,
            &StridedCopy::concat_part(&[2, 5], 1, 3, &[2, 2]),
        );
        assert_eq!(c, vec![0.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 5.0, 4.0, 5.0]);
    }
}
