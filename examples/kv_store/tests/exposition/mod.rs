//! A strict reader of the Prometheus text exposition format (version 0.0.4),
//! enough to check what `GET /metrics` serves: it refuses what a Prometheus
//! server would refuse (a sample before its family's TYPE, a family declared
//! twice or split, a malformed name, label or value), and checks histograms'
//! buckets add up.
//!
//! Written for the tests rather than taken from a crate so that the check is
//! independent of the encoder: it reads the format as the format's
//! documentation describes it, not as `prometheus-client` writes it.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line: a series and its value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    /// The sample's name: the family's, or for a histogram with `_bucket`,
    /// `_sum` or `_count` after it.
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// The samples under one `# HELP` and `# TYPE`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Family {
    pub(crate) help: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub(crate) kind: String,
    pub(crate) samples: Vec<Sample>,
}

/// A whole scrape, by family name.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Exposition {
    pub(crate) families: BTreeMap<String, Family>,
}

impl Exposition {
    /// The value of the sample `name` with exactly `labels`, if there is one.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.families
            .values()
            .flat_map(|f| &f.samples)
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// [`value`](Self::value), for a sample the scrape must have.
    pub(crate) fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or_else(|| {
            let names: BTreeSet<&str> = self
                .families
                .values()
                .flat_map(|f| &f.samples)
                .map(|s| s.name.as_str())
                .collect();
            panic!("no sample {name} {labels:?}; the scrape has {names:?}")
        })
    }

    /// Every sample of family `family`, as `(label value of `label`, value)`.
    pub(crate) fn by_label(&self, family: &str, label: &str) -> BTreeMap<String, f64> {
        self.families
            .get(family)
            .map(|f| {
                f.samples
                    .iter()
                    .filter_map(|s| Some((s.labels.get(label)?.clone(), s.value)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Reads a scrape, or says which line is wrong and why.
pub(crate) fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    // The family whose samples are being read: a family's samples must
    // follow its TYPE line without another family in between.
    let mut current: Option<String> = None;
    let mut closed: BTreeSet<String> = BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            check_name(name).map_err(at)?;
            let f = open_family(&mut out, &mut current, &mut closed, name).map_err(at)?;
            if !f.help.is_empty() {
                return Err(at("a second HELP".into()));
            }
            f.help = unescape(help, false).map_err(at)?;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or_else(|| at("no type".into()))?;
            check_name(name).map_err(at)?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(at(format!("unknown type {kind}")));
            }
            let f = open_family(&mut out, &mut current, &mut closed, name).map_err(at)?;
            if !f.kind.is_empty() || !f.samples.is_empty() {
                return Err(at("TYPE after the family's samples or twice".into()));
            }
            f.kind = kind.to_owned();
        } else if line.starts_with('#') {
            return Err(at("a comment the encoder does not write".into()));
        } else {
            let sample = parse_sample(line).map_err(at)?;
            let family = current
                .as_ref()
                .ok_or_else(|| at("a sample before any TYPE".into()))?;
            let f = out.families.get_mut(family).expect("current is open");
            if f.kind.is_empty() {
                return Err(at("a sample before its family's TYPE".into()));
            }
            let suffixes: &[&str] = if f.kind == "histogram" {
                &["_bucket", "_sum", "_count"]
            } else {
                &[""]
            };
            let belongs = suffixes
                .iter()
                .any(|s| sample.name.strip_suffix(s) == Some(family.as_str()));
            if !belongs {
                return Err(at(format!("not a sample of family {family}")));
            }
            f.samples.push(sample);
        }
    }
    for (name, f) in &out.families {
        if f.kind == "histogram" {
            check_histogram(f).map_err(|e| format!("histogram {name}: {e}"))?;
        }
    }
    Ok(out)
}

/// The family `name`, opened for its HELP or TYPE line; refused if its lines
/// were already closed by another family's.
fn open_family<'a>(
    out: &'a mut Exposition,
    current: &mut Option<String>,
    closed: &mut BTreeSet<String>,
    name: &str,
) -> Result<&'a mut Family, String> {
    if current.as_deref() != Some(name) {
        if closed.contains(name) {
            return Err(format!("family {name} appears twice"));
        }
        if let Some(previous) = current.replace(name.to_owned()) {
            closed.insert(previous);
        }
    }
    Ok(out.families.entry(name.to_owned()).or_default())
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

/// Undoes the format's escapes: `\\` and `\n` everywhere, `\"` in label values.
fn unescape(s: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            other => return Err(format!("bad escape \\{other:?}")),
        }
    }
    Ok(out)
}

/// `name{label="value",...} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or_else(|| "no value".to_owned())?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (pairs, tail) = split_labels(after)?;
        for (k, v) in pairs {
            check_label_name(&k)?;
            if labels.insert(k.clone(), v).is_some() {
                return Err(format!("label {k} twice"));
            }
        }
        rest = tail;
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_owned())?
        .split(' ');
    let value = match fields.next() {
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some("NaN") => f64::NAN,
        Some(v) => v.parse().map_err(|e| format!("bad value {v:?}: {e}"))?,
        None => return Err("no value".into()),
    };
    if let Some(ts) = fields.next() {
        ts.parse::<i64>()
            .map_err(|e| format!("bad timestamp {ts:?}: {e}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// A sample's labels as written, in order.
type LabelPairs = Vec<(String, String)>;

/// The `label="value"` pairs after a `{`, and what follows the closing `}`.
fn split_labels(s: &str) -> Result<(LabelPairs, &str), String> {
    let mut pairs = Vec::new();
    let mut rest = s;
    loop {
        if let Some(tail) = rest.strip_prefix('}') {
            return Ok((pairs, tail));
        }
        let (key, after) = rest
            .split_once("=\"")
            .ok_or_else(|| "a label without =\"".to_owned())?;
        // The value ends at the first quote that is not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end.ok_or_else(|| "an unterminated label value".to_owned())?;
        pairs.push((key.to_owned(), unescape(&after[..end], true)?));
        rest = &after[end + 1..];
        if let Some(tail) = rest.strip_prefix(',') {
            rest = tail;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by commas".into());
        }
    }
}

/// Buckets in increasing `le` order, cumulative, ending at `+Inf` with the count.
fn check_histogram(f: &Family) -> Result<(), String> {
    let name = |suffix: &str| {
        f.samples
            .iter()
            .filter(move |s| s.name.ends_with(suffix))
            .collect::<Vec<_>>()
    };
    let count = match name("_count")[..] {
        [c] => c.value,
        _ => return Err("not exactly one _count".into()),
    };
    if name("_sum").len() != 1 {
        return Err("not exactly one _sum".into());
    }
    let mut last = (f64::NEG_INFINITY, 0.0);
    for b in name("_bucket") {
        let le = match b.labels.get("le").map(String::as_str) {
            Some("+Inf") => f64::INFINITY,
            Some(v) => v.parse().map_err(|e| format!("bad le {v:?}: {e}"))?,
            None => return Err("a bucket without le".into()),
        };
        if le <= last.0 || b.value < last.1 {
            return Err(format!("bucket le={le} out of order or not cumulative"));
        }
        last = (le, b.value);
    }
    if last != (f64::INFINITY, count) {
        return Err(format!(
            "the last bucket {last:?} is not +Inf with the count {count}"
        ));
    }
    Ok(())
}

#[test]
fn the_reader_takes_the_format_and_refuses_what_breaks_it() {
    let good = "# HELP a_total An \\\\ escaped\\n help.\n# TYPE a_total counter\n\
                a_total{x=\"q\\\"uote\",y=\"2\"} 3\n\
                # HELP h Latency.\n# TYPE h histogram\n\
                h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
    let e = parse(good).unwrap();
    assert_eq!(e.families["a_total"].help, "An \\ escaped\n help.");
    assert_eq!(e.get("a_total", &[("x", "q\"uote"), ("y", "2")]), 3.0);
    assert_eq!(e.get("h_count", &[]), 2.0);
    for bad in [
        "a 1\n",
        "# TYPE a gauge\nb 1\n",
        "# TYPE a gauge\na{x=1} 1\n",
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\n",
        "# TYPE a gauge\na one\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# TYPE 1a gauge\n",
    ] {
        assert!(parse(bad).is_err(), "accepted {bad:?}");
    }
}
