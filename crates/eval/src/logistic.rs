//! L2-regularised logistic regression by Newton's method on sparse rows.
//!
//! Minimises `Σ log(1 + exp(-y·(b + w·x))) + λ/2·|w|²` (the intercept `b`
//! is not penalised). Rows are sparse (features built from tables are
//! mostly 0/1 indicators), so each Newton step costs
//! O(rows × nonzeros² + features³).

/// A sparse row: (feature index, value), indices increasing.
pub type Row = Vec<(usize, f64)>;

/// A fitted model.
#[derive(Debug, Clone, PartialEq)]
pub struct Logistic {
    /// Intercept.
    pub intercept: f64,
    /// One weight per feature.
    pub weights: Vec<f64>,
    /// Newton iterations used.
    pub iterations: usize,
}

impl Logistic {
    /// The linear score (log-odds) of a row.
    pub fn log_odds(&self, row: &Row) -> f64 {
        self.intercept + row.iter().map(|&(j, v)| self.weights[j] * v).sum::<f64>()
    }

    /// The predicted probability of a row.
    pub fn probability(&self, row: &Row) -> f64 {
        sigmoid(self.log_odds(row))
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `log(1 + exp(z))` without overflow.
fn softplus(z: f64) -> f64 {
    if z > 30.0 {
        z
    } else {
        z.exp().ln_1p()
    }
}

/// The penalised negative log-likelihood.
pub fn loss(model: &Logistic, rows: &[Row], labels: &[bool], lambda: f64) -> f64 {
    let data: f64 = rows
        .iter()
        .zip(labels)
        .map(|(row, &y)| {
            let z = model.log_odds(row);
            if y {
                softplus(-z)
            } else {
                softplus(z)
            }
        })
        .sum();
    data + lambda / 2.0 * model.weights.iter().map(|w| w * w).sum::<f64>()
}

/// The gradient of [`loss`] (intercept first).
pub fn gradient(model: &Logistic, rows: &[Row], labels: &[bool], lambda: f64) -> Vec<f64> {
    let mut g = vec![0.0; model.weights.len() + 1];
    for (row, &y) in rows.iter().zip(labels) {
        let r = model.probability(row) - f64::from(u8::from(y));
        g[0] += r;
        for &(j, v) in row {
            g[j + 1] += r * v;
        }
    }
    for (j, w) in model.weights.iter().enumerate() {
        g[j + 1] += lambda * w;
    }
    g
}

/// Fits the model. `dims` is the number of features; `lambda` >= 0 (with
/// 0, separable data has no finite solution: iterations stop at 100).
pub fn fit(rows: &[Row], labels: &[bool], dims: usize, lambda: f64) -> Logistic {
    let n = dims + 1;
    let mut model = Logistic {
        intercept: 0.0,
        weights: vec![0.0; dims],
        iterations: 0,
    };
    let mut current = loss(&model, rows, labels, lambda);
    for iteration in 1..=100 {
        model.iterations = iteration;
        let g = gradient(&model, rows, labels, lambda);
        // Hessian: Σ p(1-p)·x̃x̃ᵀ + λ on the weights (x̃ = [1, x]).
        let mut h = vec![0.0; n * n];
        for row in rows {
            let p = model.probability(row);
            let w = (p * (1.0 - p)).max(1e-12);
            h[0] += w;
            for &(j, v) in row {
                h[j + 1] += w * v;
                h[(j + 1) * n] += w * v;
                for &(k, u) in row {
                    h[(j + 1) * n + k + 1] += w * v * u;
                }
            }
        }
        for j in 1..n {
            h[j * n + j] += lambda.max(1e-9);
        }
        let Some(step) = solve_spd(&mut h, &g, n) else {
            break;
        };
        // Newton step with halving until the loss does not increase.
        let mut t = 1.0;
        let mut accepted = false;
        while t > 1e-6 {
            let candidate = Logistic {
                intercept: model.intercept - t * step[0],
                weights: model
                    .weights
                    .iter()
                    .zip(&step[1..])
                    .map(|(w, s)| w - t * s)
                    .collect(),
                iterations: iteration,
            };
            let next = loss(&candidate, rows, labels, lambda);
            if next <= current + 1e-12 {
                let change = current - next;
                model = candidate;
                current = next;
                accepted = true;
                if change < 1e-10 * (1.0 + current.abs()) {
                    return model;
                }
                break;
            }
            t /= 2.0;
        }
        if !accepted {
            break;
        }
    }
    model
}

/// Solves `a·x = b` for a symmetric positive definite `a` (n×n, row-major,
/// overwritten) by Cholesky; `None` if it is not positive definite.
fn solve_spd(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    let mut y = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            y[i] -= a[i * n + k] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= a[k * n + i] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn logit(p: f64) -> f64 {
        (p / (1.0 - p)).ln()
    }

    #[test]
    fn one_binary_feature_gives_the_log_odds_ratio_exactly() {
        // x = 0: 30 of 100 convert; x = 1: 60 of 80. Without a penalty the
        // maximum-likelihood solution is closed-form.
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (x, n, k) in [(0.0, 100, 30), (1.0, 80, 60)] {
            for i in 0..n {
                rows.push(if x == 0.0 { vec![] } else { vec![(0, 1.0)] });
                labels.push(i < k);
            }
        }
        let m = fit(&rows, &labels, 1, 0.0);
        assert!((m.intercept - logit(0.3)).abs() < 1e-8, "{m:?}");
        assert!(
            (m.weights[0] - (logit(0.75) - logit(0.3))).abs() < 1e-8,
            "{m:?}"
        );
        assert!(m.iterations < 20);
    }

    #[test]
    fn the_penalised_solution_has_zero_gradient_and_shrinks() {
        let mut rng = Rng::new(3);
        let planted = [1.5, -2.0, 0.5, 0.0];
        let (mut rows, mut labels) = (Vec::new(), Vec::new());
        for _ in 0..4_000 {
            let row: Row = (0..4)
                .filter(|_| rng.below(2) == 1)
                .map(|j| (j, 1.0))
                .collect();
            let z = -0.3 + row.iter().map(|&(j, _)| planted[j]).sum::<f64>();
            labels.push((rng.next_u64() as f64 / u64::MAX as f64) < sigmoid(z));
            rows.push(row);
        }
        let free = fit(&rows, &labels, 4, 0.0);
        for (w, p) in free.weights.iter().zip(planted) {
            assert!((w - p).abs() < 0.2, "{free:?}");
        }
        let penalised = fit(&rows, &labels, 4, 200.0);
        let g = gradient(&penalised, &rows, &labels, 200.0);
        assert!(g.iter().all(|x| x.abs() < 1e-6), "{g:?}");
        let norm = |m: &Logistic| m.weights.iter().map(|w| w * w).sum::<f64>();
        assert!(norm(&penalised) < norm(&free));
    }

    #[test]
    fn separable_data_stays_finite_with_a_penalty() {
        let rows = vec![vec![], vec![(0, 1.0)], vec![], vec![(0, 1.0)]];
        let labels = [false, true, false, true];
        let m = fit(&rows, &labels, 1, 1.0);
        // By symmetry b = -w/2, and the optimum solves w = 2·σ(-w/2).
        let w = m.weights[0];
        assert!((m.intercept + w / 2.0).abs() < 1e-9, "{m:?}");
        assert!((w - 2.0 * sigmoid(-w / 2.0)).abs() < 1e-9, "{m:?}");
    }
}
