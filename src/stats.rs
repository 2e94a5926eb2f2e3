//! Summary statistics with the conventions every harness report uses: the mean,
//! **population** standard deviation, and percentiles by linear interpolation between
//! order statistics (numpy's default, `method="linear"`).

use serde::{Deserialize, Serialize};

/// The percentiles llm-d's benchmark report carries (p0.1 … p99.9).
pub const PERCENTILES: [f64; 11] = [0.1, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

/// numpy.percentile(sorted, p) with linear interpolation. `sorted` must be ascending and
/// non-empty.
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    debug_assert!(!sorted.is_empty());
    let rank = p / 100.0 * (sorted.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = rank.ceil() as usize;
    let frac = rank - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Summary of a sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
    /// The most frequent value (ties: the smallest), as scipy/pandas report it.
    pub mode: f64,
    /// `(p, value)` for each of [`PERCENTILES`]; in JSON an object `{"p0.1": …, "p50": …}`.
    #[serde(with = "percentile_map")]
    pub percentiles: Vec<(f64, f64)>,
}

/// `p50`, `p99.9`: the key a percentile has in JSON.
pub fn percentile_key(p: f64) -> String {
    format!("p{}", crate::pyfmt::float_repr(p).trim_end_matches(".0"))
}

mod percentile_map {
    use serde::de::Error;
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(v.len()))?;
        for (p, x) in v {
            m.serialize_entry(&super::percentile_key(*p), x)?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        let m = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        m.into_iter()
            .map(|(k, v)| {
                let p = k.strip_prefix('p').and_then(|p| p.parse::<f64>().ok());
                p.zip(v.as_f64()).ok_or_else(|| D::Error::custom(format!("bad percentile entry '{k}': {v}")))
            })
            .collect()
    }
}

impl Summary {
    /// Summarizes `values` (NaNs are dropped). `None` for an empty sample.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Self::of_sorted(&v))
    }

    /// [`Summary::of`] on an owned sample, sorted in place (no copy for large samples).
    pub fn of_vec(mut v: Vec<f64>) -> Option<Summary> {
        v.retain(|x| !x.is_nan());
        if v.is_empty() {
            return None;
        }
        v.sort_unstable_by(f64::total_cmp);
        Some(Self::of_sorted(&v))
    }

    /// Summarizes an ascending, NaN-free sample.
    pub fn of_sorted(v: &[f64]) -> Summary {
        let n = v.len();
        // Kahan-compensated sums keep the mean exact to ~1 ulp even for 10^6 samples.
        let mean = kahan_sum(v.iter().copied()) / n as f64;
        let var = kahan_sum(v.iter().map(|x| (x - mean) * (x - mean))) / n as f64;
        let mut mode = v[0];
        let mut best = 0usize;
        let mut i = 0;
        while i < n {
            let mut j = i;
            while j < n && v[j] == v[i] {
                j += 1;
            }
            if j - i > best {
                best = j - i;
                mode = v[i];
            }
            i = j;
        }
        Summary {
            count: n,
            mean,
            stddev: var.sqrt(),
            min: v[0],
            max: v[n - 1],
            mode,
            percentiles: PERCENTILES.iter().map(|&p| (p, percentile_sorted(v, p))).collect(),
        }
    }

    /// The value of percentile `p` (one of [`PERCENTILES`]).
    pub fn p(&self, p: f64) -> f64 {
        self.percentiles.iter().find(|(q, _)| (*q - p).abs() < 1e-9).map_or(f64::NAN, |(_, v)| *v)
    }

    pub fn median(&self) -> f64 {
        self.p(50.0)
    }
}

/// The ascending union of two ascending, NaN-free samples.
pub fn merge_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if b[j] < a[i] {
            out.push(b[j]);
            j += 1;
        } else {
            out.push(a[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

fn kahan_sum(values: impl Iterator<Item = f64>) -> f64 {
    let mut sum = 0.0;
    let mut c = 0.0;
    for x in values {
        let y = x - c;
        let t = sum + y;
        c = (t - sum) - y;
        sum = t;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_conventions() {
        // numpy: np.percentile([1,2,3,4,10], [10,50,99.9]) = [1.4, 3.0, 9.976]; np.std = 3.1622776601683795
        let s = Summary::of(&[4.0, 1.0, 10.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.count, 5);
        assert_eq!(s.mean, 4.0);
        assert!((s.stddev - 3.1622776601683795).abs() < 1e-12);
        assert!((s.p(10.0) - 1.4).abs() < 1e-12);
        assert_eq!(s.median(), 3.0);
        assert!((s.p(99.9) - 9.976).abs() < 1e-12);
        assert_eq!((s.min, s.max), (1.0, 10.0));
        assert_eq!(Summary::of(&[2.0, 1.0, 2.0, 1.0, 3.0]).unwrap().mode, 1.0, "ties take the smallest");
        assert!(Summary::of(&[]).is_none());
        assert_eq!(merge_sorted(&[1.0, 2.0, 2.0, 7.0], &[0.5, 2.0, 9.0]), [0.5, 1.0, 2.0, 2.0, 2.0, 7.0, 9.0]);
        assert_eq!(merge_sorted(&[], &[1.0]), [1.0]);
        assert_eq!(Summary::of(&[7.0]).unwrap().p(99.9), 7.0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["percentiles"]["p50"], 3.0);
        assert!(json["percentiles"]["p99.9"].is_number() && json["percentiles"]["p0.1"].is_number());
        assert_eq!(serde_json::from_value::<Summary>(json).unwrap(), s);
    }
}
