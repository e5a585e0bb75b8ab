//! Early refresh (XFetch): a read recomputes a value before it expires with a
//! probability that rises as expiry nears and with how long the value took to
//! compute, so that one caller, not a herd, refreshes a hot key.
//!
//! A read at time `now` of an entry that expires at `expiry` and took `delta`
//! to compute refreshes when `delta · beta · -ln(u) >= expiry - now` for `u`
//! uniform in (0, 1]; that is, with probability `exp(-(expiry - now) / (beta · delta))`
//! (Vattani, Chierichetti, Lowenstein: *Optimal Probabilistic Cache Stampede
//! Prevention*, VLDB 2015).

/// Whether this read should refresh early. `u` is uniform in `[0, 1)`.
pub(crate) fn xfetch(now_ms: u64, expiry_ms: u64, delta_us: u32, beta: f64, u: f64) -> bool {
    if now_ms >= expiry_ms {
        return true;
    }
    if delta_us == 0 || beta <= 0.0 {
        return false;
    }
    let left_ms = (expiry_ms - now_ms) as f64;
    let scale_ms = beta * f64::from(delta_us) / 1000.0;
    // 1 - u is in (0, 1], so the logarithm is finite.
    -(1.0 - u).ln() * scale_ms >= left_ms
}

#[cfg(test)]
mod tests {
    use super::xfetch;
    use rand::{RngExt, SeedableRng, rngs::StdRng};

    /// Over 100 000 reads, the refresh frequency is exp(-t/(βΔ)) within ±2%.
    #[test]
    fn refresh_probability_matches_exp_law() {
        let mut rng = StdRng::seed_from_u64(7);
        let expiry = 1_000_000u64;
        for (left_ms, delta_ms, beta) in [
            (100u64, 100u32, 1.0),
            (50, 100, 1.0),
            (200, 100, 1.0),
            (100, 50, 2.0),
            (10, 100, 0.5),
        ] {
            let trials = 100_000;
            let hits = (0..trials)
                .filter(|_| {
                    xfetch(
                        expiry - left_ms,
                        expiry,
                        delta_ms * 1000,
                        beta,
                        rng.random::<f64>(),
                    )
                })
                .count();
            let got = hits as f64 / trials as f64;
            let want = (-(left_ms as f64) / (beta * f64::from(delta_ms))).exp();
            assert!(
                (got - want).abs() <= 0.02 * want,
                "t={left_ms} Δ={delta_ms} β={beta}: {got} vs {want}"
            );
        }
    }

    #[test]
    fn expired_always_refreshes_and_zero_delta_never_early() {
        assert!(xfetch(10, 10, 0, 1.0, 0.5));
        assert!(!xfetch(0, 10, 0, 1.0, 0.999));
    }
}
