//! Shape rules shared by recording, lowering and the kernels: the output shape of a batched
//! matrix product and the kernel shapes of convolution and pooling, or why the operands do not fit.

use super::{ConvConfig, PoolConfig};
use sinter_ops::batch_norm::BatchNormShape;
use sinter_ops::conv::Conv2dShape;
use sinter_ops::pool::Pool2dShape;

/// Output shape of a batched matrix product, or why the operands do not fit.
pub fn matmul_shape(
    a: &[usize],
    b: &[usize],
    trans_a: bool,
    trans_b: bool,
) -> Result<Vec<usize>, String> {
    if a.len() < 2 || b.len() < 2 {
        return Err(format!("operands must have rank ≥ 2, got {a:?} and {b:?}"));
    }
    let (ra, rb) = (a.len(), b.len());
    let (m, ka) = if trans_a {
        (a[ra - 1], a[ra - 2])
    } else {
        (a[ra - 2], a[ra - 1])
    };
    let (kb, n) = if trans_b {
        (b[rb - 1], b[rb - 2])
    } else {
        (b[rb - 2], b[rb - 1])
    };
    if ka != kb {
        return Err(format!(
            "inner dimensions differ: {a:?}{} · {b:?}{} ({ka} vs {kb})",
            if trans_a { "ᵀ" } else { "" },
            if trans_b { "ᵀ" } else { "" }
        ));
    }
    let (ba, bb) = (&a[..ra - 2], &b[..rb - 2]);
    let batch = match (ba.is_empty(), bb.is_empty()) {
        (_, true) => ba.to_vec(),
        (true, false) => bb.to_vec(),
        (false, false) if ba == bb => ba.to_vec(),
        _ => return Err(format!("batch dimensions differ: {a:?} and {b:?}")),
    };
    let mut out = batch;
    out.extend([m, n]);
    Ok(out)
}

/// The kernel shape of a convolution, or why it is invalid.
pub fn conv_shape(x: &[usize], w: &[usize], c: ConvConfig) -> Result<Conv2dShape, String> {
    if x.len() != 4 || w.len() != 4 {
        return Err(format!(
            "expects x [N, C, H, W] and weight [O, C, KH, KW], got {x:?} and {w:?}"
        ));
    }
    if x[1] != w[1] {
        return Err(format!(
            "input has {} channels but weight {w:?} expects {}",
            x[1], w[1]
        ));
    }
    let s = Conv2dShape {
        n: x[0],
        c_in: x[1],
        h: x[2],
        w: x[3],
        c_out: w[0],
        kh: w[2],
        kw: w[3],
        stride: c.stride,
        pad: c.pad,
        dilation: c.dilation,
    };
    s.check("conv2d").map_err(|e| e.to_string())?;
    Ok(s)
}

/// The kernel shape of a pooling, or why it is invalid.
pub fn pool_shape(x: &[usize], c: PoolConfig) -> Result<Pool2dShape, String> {
    if x.len() != 4 {
        return Err(format!("expects x [N, C, H, W], got {x:?}"));
    }
    let s = Pool2dShape {
        n: x[0],
        c: x[1],
        h: x[2],
        w: x[3],
        kh: c.kernel[0],
        kw: c.kernel[1],
        stride: c.stride,
        pad: c.pad,
    };
    s.check("pool2d").map_err(|e| e.to_string())?;
    Ok(s)
}

/// The kernel shape of a batch normalization of `x: [N, C, H, W]`, or why it is invalid.
pub fn batch_norm_shape(x: &[usize], eps: f32) -> Result<BatchNormShape, String> {
    if x.len() != 4 {
        return Err(format!("expects x [N, C, H, W], got {x:?}"));
    }
    let s = BatchNormShape {
        n: x[0],
        channels: x[1],
        hw: x[2] * x[3],
        eps,
    };
    s.check("batch_norm2d").map_err(|e| e.to_string())?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_shapes() {
        assert_eq!(matmul_shape(&[2, 3], &[3, 4], false, false), Ok(vec![2, 4]));
        assert_eq!(matmul_shape(&[3, 2], &[3, 4], true, false), Ok(vec![2, 4]));
        assert_eq!(matmul_shape(&[2, 3], &[4, 3], false, true), Ok(vec![2, 4]));
        assert_eq!(
            matmul_shape(&[5, 2, 3], &[3, 4], false, false),
            Ok(vec![5, 2, 4])
        );
        assert_eq!(
            matmul_shape(&[2, 3], &[5, 3, 4], false, false),
            Ok(vec![5, 2, 4])
        );
        let e = matmul_shape(&[2, 3], &[4, 5], false, false).unwrap_err();
        assert!(e.contains("[2, 3]") && e.contains("[4, 5]"), "{e}");
        assert!(matmul_shape(&[2, 2, 3], &[5, 3, 4], false, false).is_err());
    }
}
