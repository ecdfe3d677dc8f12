use std::time::Instant;
struct G {
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    stride: [usize; 2],
    pad: [usize; 2],
    dilation: [usize; 2],
}
impl G {
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    fn valid_cols(&self, kx: usize) -> (usize, usize, isize) {
        let off = (kx * self.dilation[1]) as isize - self.pad[1] as isize;
        let s = self.stride[1] as isize;
        let lo = if off >= 0 { 0 } else { (-off + s - 1) / s };
        let room = self.w as isize - off;
        let hi = if room <= 0 { 0 } else { (room + s - 1) / s };
        let hi = (hi as usize).min(self.ow);
        ((lo as usize).min(hi), hi, off)
    }
    fn input_row(&self, oy: usize, ky: usize) -> Option<usize> {
        let ih = (oy * self.stride[0] + ky * self.dilation[0]) as isize - self.pad[0] as isize;
        (ih >= 0 && (ih as usize) < self.h).then_some(ih as usize)
    }
}
fn im2col(g: &G, x: &[f32], col: &mut [f32]) {
    let (p, hw) = (g.p(), g.h * g.w);
    let mut rows = col.chunks_exact_mut(p);
    for c in 0..g.c {
        let plane = &x[c * hw..(c + 1) * hw];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let row = rows.next().expect("col has C·KH·KW rows");
                let (lo, hi, off) = g.valid_cols(kx);
                for (oy, out) in row.chunks_exact_mut(g.ow).enumerate() {
                    let Some(ih) = g.input_row(oy, ky).filter(|_| lo < hi) else {
                        out.fill(0.0);
                        continue;
                    };
                    out[..lo].fill(0.0);
                    out[hi..].fill(0.0);
                    let src = &plane[ih * g.w..(ih + 1) * g.w];
                    let first = (lo as isize * g.stride[1] as isize + off) as usize;
                    if g.stride[1] == 1 {
                        out[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                    } else {
                        let taps = src[first..].iter().step_by(g.stride[1]);
                        for (v, &s) in out[lo..hi].iter_mut().zip(taps) {
                            *v = s;
                        }
                    }
                }
            }
        }
    }
}
fn main() {
    let g = G {
        c: 32,
        h: 14,
        w: 14,
        kh: 3,
        kw: 3,
        oh: 14,
        ow: 14,
        stride: [1, 1],
        pad: [1, 1],
        dilation: [1, 1],
    };
    let x = vec![1.0f32; 32 * 196];
    let mut col = vec![0.0f32; 288 * 196];
    for _ in 0..100 {
        im2col(&g, &x, &mut col);
    }
    let t0 = Instant::now();
    for _ in 0..1000 {
        im2col(&g, &x, &mut col);
        std::hint::black_box(&mut col);
    }
    println!(
        "im2col conv2 per image: {:.1} us",
        t0.elapsed().as_secs_f64() * 1e3
    );
}
