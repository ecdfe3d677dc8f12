//! Training-time augmentation of image batches: random translations (what torchvision's
//! `RandomCrop(size, padding=n)` does), drawn from the run's seed and the step number alone.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The translation `(dy, dx)` of each of the `batch` images of step `step`, each coordinate
/// uniform in `[−max, max]`. A function of `(seed, step)` only: a resumed run, a micro-batch or a
/// data-parallel rank (which takes its rows of the global batch) draws the same shifts as one
/// uninterrupted process.
pub fn random_shifts(seed: u64, step: u64, batch: usize, max: usize) -> Vec<(isize, isize)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5417_f7ed_a0c3_b2e1);
    rng.set_stream(step);
    let m = max as i64;
    let mut draw = || rng.random_range(-m..=m) as isize;
    (0..batch).map(|_| (draw(), draw())).collect()
}

/// Translates image k of `images: [n, channels, h, w]` by `shifts[k] = (dy, dx)`: the pixel at
/// (y, x) moves to (y + dy, x + dx); pixels moved out are lost and the uncovered border is 0.
pub fn shift_images(images: &mut [f32], shape: [usize; 3], shifts: &[(isize, isize)]) {
    let [c, h, w] = shape;
    let per = c * h * w;
    assert_eq!(
        images.len(),
        per * shifts.len(),
        "shift_images: {} values for {} images of {shape:?}",
        images.len(),
        shifts.len()
    );
    let mut plane = vec![0.0f32; h * w];
    for (image, &(dy, dx)) in images.chunks_exact_mut(per).zip(shifts) {
        if (dy, dx) == (0, 0) {
            continue;
        }
        for channel in image.chunks_exact_mut(h * w) {
            plane.iter_mut().for_each(|p| *p = 0.0);
            for y in 0..h {
                let ty = y as isize + dy;
                if ty < 0 || ty >= h as isize {
                    continue;
                }
                // Source columns x whose target x + dx lies in [0, w).
                let x0 = (-dx).max(0) as usize;
                let x1 = (w as isize - dx).min(w as isize).max(0) as usize;
                if x0 >= x1 {
                    continue;
                }
                let t0 = (x0 as isize + dx) as usize;
                let len = x1 - x0;
                plane[ty as usize * w + t0..][..len].copy_from_slice(&channel[y * w + x0..][..len]);
            }
            channel.copy_from_slice(&plane);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_moves_pixels_and_fills_the_border_with_zero() {
        // Two channels of 3×4, values 1..=24.
        let image: Vec<f32> = (1..=24).map(|v| v as f32).collect();
        let mut x = image.clone();
        shift_images(&mut x, [2, 3, 4], &[(1, -1)]);
        #[rustfmt::skip]
        let want = [
            0.0, 0.0, 0.0, 0.0,
            2.0, 3.0, 4.0, 0.0,
            6.0, 7.0, 8.0, 0.0,
            0.0, 0.0, 0.0, 0.0,
            14.0, 15.0, 16.0, 0.0,
            18.0, 19.0, 20.0, 0.0,
        ];
        assert_eq!(x, want);
        // No shift leaves an image alone; a shift as large as the image empties it.
        let mut y = image.clone();
        shift_images(&mut y, [2, 3, 4], &[(0, 0)]);
        assert_eq!(y, image);
        let mut z = image;
        shift_images(&mut z, [2, 3, 4], &[(0, 4)]);
        assert!(z.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn shifts_depend_on_seed_and_step_only_and_stay_in_range() {
        let a = random_shifts(7, 3, 64, 2);
        assert_eq!(a, random_shifts(7, 3, 64, 2));
        assert_ne!(a, random_shifts(7, 4, 64, 2));
        assert_ne!(a, random_shifts(8, 3, 64, 2));
        assert!(a.iter().all(|&(y, x)| y.abs() <= 2 && x.abs() <= 2));
        // All 25 shifts of [−2, 2]² occur.
        let many = random_shifts(1, 0, 2000, 2);
        for dy in -2..=2 {
            for dx in -2..=2 {
                assert!(many.contains(&(dy, dx)), "({dy}, {dx}) never drawn");
            }
        }
        assert!(random_shifts(1, 0, 10, 0).iter().all(|&s| s == (0, 0)));
    }
}
