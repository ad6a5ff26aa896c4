//! Noise from opendp's exact samplers, drawn in parallel chunks across cores.
//!
//! Every sample comes from `opendp::traits::samplers::sample_discrete_gaussian` (CKS20),
//! which draws its randomness from opendp's secure RNG (OpenSSL with `use-openssl`).
//! No sampler is written here. The float-valued Gaussian of `central` and `local` mode is
//! the same discrete Gaussian on the grid of step s, as opendp's own float Gaussian does
//! on its 2^k lattice; it is ~4× cheaper than opendp's exact float sampler.

use dashu::rational::RBig;
use opendp::traits::samplers::sample_discrete_gaussian;

use crate::error::{PrivacyError, Result};
use crate::settings::positive;

/// Samples below this count are drawn on the calling thread (threads cost more).
const MIN_PARALLEL_SAMPLES: usize = 4096;

/// `count` independent samples of the discrete Gaussian N_Z(0, scale²), `scale` in
/// grid steps, drawn on all available cores.
pub fn discrete_gaussian(count: usize, scale: f64) -> Result<Vec<i64>> {
    let scale = positive("noise scale", scale)?;
    let scale = RBig::try_from(scale).map_err(|e| PrivacyError::OpenDp {
        place: "noise scale to rational",
        detail: format!("{e:?}"),
    })?;
    let mut out = vec![0i64; count];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads == 1 || count < MIN_PARALLEL_SAMPLES {
        fill_chunk(&mut out, &scale)?;
        return Ok(out);
    }

    let chunk = count.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = out
            .chunks_mut(chunk)
            .map(|part| {
                let scale = scale.clone();
                scope.spawn(move || fill_chunk(part, &scale))
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().map_err(|_| PrivacyError::OpenDp {
                place: "noise sampling thread",
                detail: "a sampling thread panicked".into(),
            })?
        })
    })?;
    Ok(out)
}

fn fill_chunk(out: &mut [i64], scale: &RBig) -> Result<()> {
    for slot in out.iter_mut() {
        let sample = sample_discrete_gaussian(scale.clone()).map_err(|e| PrivacyError::OpenDp {
            place: "sample_discrete_gaussian",
            detail: e.to_string(),
        })?;
        *slot = i64::try_from(&sample).map_err(|_| PrivacyError::OpenDp {
            place: "sample_discrete_gaussian",
            detail: format!("sample {sample} does not fit in 64 bits"),
        })?;
    }
    Ok(())
}

/// Adds N_Z(0, scale²) grid steps to every quantised value.
pub fn add_discrete_gaussian(values: &mut [i64], scale: f64) -> Result<()> {
    let noise = discrete_gaussian(values.len(), scale)?;
    for (v, n) in values.iter_mut().zip(noise) {
        *v += n;
    }
    Ok(())
}

/// Adds Gaussian noise of standard deviation `sigma` (parameter units) to float values
/// for `central` and `local` mode: each value is first rounded to the nearest multiple of
/// `grid_step` (so the output reveals nothing of the value below the grid), then gets
/// `grid_step` · N_Z(0, (sigma / grid_step)²).
///
/// Rounding to the nearest grid point moves a vector by at most s·√d/2 in L2; the
/// accountant adds that to the sensitivity ([`crate::accountant::round_rho`]).
pub fn add_gaussian_on_grid(values: &mut [f64], sigma: f64, grid_step: f64) -> Result<()> {
    let sigma = positive("noise sigma", sigma)?;
    let step = positive("privacy.grid_step", grid_step)?;
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(PrivacyError::NonFinite {
            what: "values to noise",
            index,
        });
    }
    let noise = discrete_gaussian(values.len(), sigma / step)?;
    for (v, n) in values.iter_mut().zip(noise) {
        *v = ((*v / step).round() + n as f64) * step;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discrete_gaussian_has_the_asked_variance() {
        let scale = 20.0;
        let samples = discrete_gaussian(20_000, scale).unwrap();
        let n = samples.len() as f64;
        let mean = samples.iter().sum::<i64>() as f64 / n;
        let var = samples
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        // Standard errors: mean 20/√20000 ≈ 0.14; variance 400·√(2/20000) ≈ 4.
        assert!(mean.abs() < 0.6, "mean {mean}");
        assert!((var - 400.0).abs() < 20.0, "variance {var}");
    }

    #[test]
    fn grid_noise_lands_on_the_grid() {
        let mut v = vec![0.123_456, -3.3, 7.0];
        add_gaussian_on_grid(&mut v, 1.0, 0.25).unwrap();
        for x in &v {
            let steps = x / 0.25;
            assert!((steps - steps.round()).abs() < 1e-9, "{x} is off the grid");
        }
    }

    #[test]
    fn refuses_nan_scale_by_name() {
        let err = discrete_gaussian(3, f64::NAN).unwrap_err().to_string();
        assert!(err.contains("noise scale"), "{err}");
    }
}
