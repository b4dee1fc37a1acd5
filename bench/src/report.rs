//! Figures, the printed table and the JSON document.

use serde_json::{Value, json};

use crate::stats::{Summary, summarize};

/// One system's result for a figure.
#[derive(Debug, Clone)]
pub struct Side {
    /// The samples' summary.
    pub summary: Summary,
    /// Messages (or sessions) lost.
    pub lost: u64,
}

impl Side {
    /// A side from raw samples; `None` if there are none.
    pub fn new(samples: &[f64], higher_is_better: bool, lost: u64) -> Option<Side> {
        summarize(samples, higher_is_better).map(|summary| Side { summary, lost })
    }

    /// A side whose measurement failed altogether (no numbers; `lost` counted).
    pub fn failed(lost: u64) -> Side {
        Side {
            summary: Summary {
                n: 0,
                median: f64::NAN,
                tail: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
                mean: f64::NAN,
            },
            lost,
        }
    }
}

/// One figure: Noctua and, where they apply, the two baselines of the same run.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Stable id, e.g. `rtt.tcp`.
    pub id: String,
    /// Group (what `--only` selects).
    pub group: &'static str,
    /// Unit of the samples.
    pub unit: &'static str,
    /// Whether larger numbers are better (throughput).
    pub higher_is_better: bool,
    /// Noctua.
    pub noctua: Option<Side>,
    /// Stock libp2p request-response (cbor).
    pub stock: Option<Side>,
    /// Raw tokio TCP.
    pub raw: Option<Side>,
    /// Free text: what was measured, counts that matter.
    pub notes: String,
    /// Further numbers (counts, rates) worth keeping in the JSON.
    pub extra: serde_json::Map<String, Value>,
}

impl Figure {
    /// A figure without results yet.
    pub fn new(id: impl Into<String>, group: &'static str, unit: &'static str) -> Figure {
        Figure {
            id: id.into(),
            group,
            unit,
            higher_is_better: false,
            noctua: None,
            stock: None,
            raw: None,
            notes: String::new(),
            extra: serde_json::Map::new(),
        }
    }

    /// Records a further number.
    pub fn put(&mut self, key: &str, value: impl Into<Value>) {
        self.extra.insert(key.into(), value.into());
    }

    /// Marks the figure as higher-is-better.
    pub fn higher(mut self) -> Figure {
        self.higher_is_better = true;
        self
    }

    /// Noctua's median over a baseline's median.
    pub fn ratio(&self, baseline: &Option<Side>) -> Option<f64> {
        ratio(&self.noctua, baseline, |s| s.median)
    }

    /// Noctua's tail over a baseline's tail.
    pub fn ratio_tail(&self, baseline: &Option<Side>) -> Option<f64> {
        ratio(&self.noctua, baseline, |s| s.tail)
    }

    /// Lost by every side together.
    pub fn lost(&self) -> u64 {
        [&self.noctua, &self.stock, &self.raw]
            .iter()
            .filter_map(|s| s.as_ref().map(|s| s.lost))
            .sum()
    }
}

fn ratio(a: &Option<Side>, b: &Option<Side>, f: impl Fn(&Summary) -> f64) -> Option<f64> {
    let (a, b) = (f(&a.as_ref()?.summary), f(&b.as_ref()?.summary));
    (b != 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
}

/// A target of the issue, checked against one figure.
#[derive(Debug, Clone)]
pub struct Target {
    /// What is checked.
    pub name: String,
    /// The measured value.
    pub value: Option<f64>,
    /// The limit.
    pub limit: f64,
    /// Whether the value must stay at or below the limit (else at or above).
    pub at_most: bool,
}

impl Target {
    /// Whether the target is met (`None` when not measured).
    pub fn met(&self) -> Option<bool> {
        self.value.map(|v| {
            if self.at_most {
                v <= self.limit
            } else {
                v >= self.limit
            }
        })
    }
}

/// A figure group that could not run.
#[derive(Debug, Clone)]
pub struct Skipped {
    /// The group.
    pub group: &'static str,
    /// Why.
    pub reason: String,
}

/// Everything one run produced.
#[derive(Debug, Default)]
pub struct Report {
    /// The figures, in run order.
    pub figures: Vec<Figure>,
    /// Groups skipped.
    pub skipped: Vec<Skipped>,
    /// Options and environment, for the JSON header.
    pub meta: serde_json::Map<String, Value>,
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 10_000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else if x.abs() >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(num).unwrap_or_else(|| "-".into())
}

impl Report {
    /// Loss per system over every figure.
    pub fn lost_by_system(&self) -> (u64, u64, u64) {
        let sum = |f: fn(&Figure) -> &Option<Side>| {
            self.figures
                .iter()
                .filter_map(|x| f(x).as_ref().map(|s| s.lost))
                .sum::<u64>()
        };
        (sum(|f| &f.noctua), sum(|f| &f.stock), sum(|f| &f.raw))
    }

    /// A figure by id.
    pub fn get(&self, id: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.id == id)
    }

    /// The issue's targets, evaluated on this run.
    pub fn targets(&self) -> Vec<Target> {
        let med = |id: &str| {
            self.get(id)
                .and_then(|f| f.noctua.as_ref().map(|s| s.summary.median))
        };
        let vs_stock = |id: &str| self.get(id).and_then(|f| f.ratio(&f.stock));
        let mut t = vec![
            Target {
                name: "message round trip p50 over TCP, Noctua/stock <= 1".into(),
                value: vs_stock("rtt.tcp"),
                limit: 1.0,
                at_most: true,
            },
            Target {
                name: "message round trip p50 over QUIC, Noctua/stock <= 1".into(),
                value: vs_stock("rtt.quic"),
                limit: 1.0,
                at_most: true,
            },
        ];
        t.push(Target {
            name: "harness floor: raw TCP round trip p50 / minimal tokio ping-pong p50 <= 1.5"
                .into(),
            value: self
                .get("rtt.tcp")
                .and_then(|f| f.extra.get("raw_over_minimal_p50"))
                .and_then(Value::as_f64),
            limit: 1.5,
            at_most: true,
        });
        for f in self.figures.iter().filter(|f| {
            f.group == "throughput" && f.id.starts_with("throughput.small") && f.higher_is_better
        }) {
            t.push(Target {
                name: format!("{}: Noctua/stock >= 2", f.id),
                value: f.ratio(&f.stock),
                limit: 2.0,
                at_most: false,
            });
        }
        let labs: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| f.group == "lab" && f.id.ends_with(".mesh"))
            .collect();
        for (n, limit) in [(64usize, 15.0), (128, 60.0)] {
            if let Some(f) = self.get(&format!("lab.n{n}.mesh")) {
                t.push(Target {
                    name: format!("lab of {n}: every node's full mesh within {limit} s of the last ready (max)"),
                    value: f.extra.get("mesh_max_ms").and_then(Value::as_f64).map(|m| m / 1e3),
                    limit,
                    at_most: true,
                });
            }
        }
        if !labs.is_empty() {
            let sum = |key: &str| {
                labs.iter()
                    .map(|f| f.extra.get(key).and_then(Value::as_u64))
                    .sum::<Option<u64>>()
            };
            let (lost, dup) = (sum("broadcast_lost"), sum("broadcast_duplicates"));
            t.push(Target {
                name: "labs: every node's broadcast reached every other exactly once (lost + duplicates = 0)".into(),
                value: lost.zip(dup).map(|(l, d)| (l + d) as f64),
                limit: 0.0,
                at_most: true,
            });
            let worst = labs
                .iter()
                .map(|f| {
                    let unanswered = f.extra.get("probes_unanswered").and_then(Value::as_u64);
                    match unanswered {
                        Some(0) => f
                            .extra
                            .get("probe_max_ms")
                            .and_then(Value::as_f64)
                            .map(|m| m / 1e3),
                        // An unanswered command counts as the wait it was given up after.
                        _ => Some(5.0),
                    }
                })
                .try_fold(0.0f64, |a, b| b.map(|b| a.max(b)));
            t.push(Target {
                name: "labs: lab commands answered within 1 s while the mesh forms (max)".into(),
                value: worst,
                limit: 1.0,
                at_most: true,
            });
        }
        t.extend([
            Target {
                name: "start-up to banner < 30 ms (median)".into(),
                value: med("startup.banner"),
                limit: 30.0,
                at_most: true,
            },
            Target {
                name: "idle node RSS < 12 MiB (median)".into(),
                value: med("memory.idle_rss"),
                limit: 12.0,
                at_most: true,
            },
            Target {
                name: "handshake p50 with RSA-2048 < 12 ms".into(),
                value: med("handshake.rsa2048"),
                limit: 12.0,
                at_most: true,
            },
            Target {
                name: "messages lost by Noctua, all scenarios = 0".into(),
                value: Some(self.lost_by_system().0 as f64),
                limit: 0.0,
                at_most: true,
            },
        ]);
        t
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let header = [
            "figure",
            "unit",
            "N p50",
            "N p99",
            "stock p50",
            "stock p99",
            "raw p50",
            "raw p99",
            "N/stock p50",
            "N/stock p99",
            "N/raw p50",
            "lost N/s/r",
        ];
        let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
        for f in &self.figures {
            let med = |s: &Option<Side>| opt(s.as_ref().map(|s| s.summary.median));
            let tail = |s: &Option<Side>| opt(s.as_ref().map(|s| s.summary.tail));
            let lost = |s: &Option<Side>| {
                s.as_ref()
                    .map(|s| s.lost.to_string())
                    .unwrap_or_else(|| "-".into())
            };
            rows.push(vec![
                f.id.clone(),
                if f.higher_is_better {
                    format!("{} (p99=p1)", f.unit)
                } else {
                    f.unit.to_string()
                },
                med(&f.noctua),
                tail(&f.noctua),
                med(&f.stock),
                tail(&f.stock),
                med(&f.raw),
                tail(&f.raw),
                opt(f.ratio(&f.stock)),
                opt(f.ratio_tail(&f.stock)),
                opt(f.ratio(&f.raw)),
                format!("{}/{}/{}", lost(&f.noctua), lost(&f.stock), lost(&f.raw)),
            ]);
        }
        let widths: Vec<usize> = (0..header.len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for (i, r) in rows.iter().enumerate() {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, s)| {
                    if c == 0 {
                        format!("{s:<w$}", w = widths[c])
                    } else {
                        format!("{s:>w$}", w = widths[c])
                    }
                })
                .collect();
            out.push_str(&format!("| {} |\n", cells.join(" | ")));
            if i == 0 {
                let seps: Vec<String> = widths
                    .iter()
                    .enumerate()
                    .map(|(c, w)| {
                        if c == 0 {
                            "-".repeat(*w)
                        } else {
                            format!("{}:", "-".repeat(w.saturating_sub(1)))
                        }
                    })
                    .collect();
                out.push_str(&format!("| {} |\n", seps.join(" | ")));
            }
        }
        out.push('\n');
        for f in self.figures.iter().filter(|f| !f.notes.is_empty()) {
            out.push_str(&format!("  {}: {}\n", f.id, f.notes));
        }
        for s in &self.skipped {
            out.push_str(&format!("  [skipped] {}: {}\n", s.group, s.reason));
        }
        out.push_str(&self.labs_table());
        let (n, s, r) = self.lost_by_system();
        out.push_str(&format!(
            "\nLost: Noctua {n}, stock {s}, raw {r} (every scenario)\n\nTargets:\n"
        ));
        for t in self.targets() {
            let verdict = match t.met() {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            };
            out.push_str(&format!(
                "  [{verdict:>12}] {} (measured {})\n",
                t.name,
                opt(t.value)
            ));
        }
        out
    }

    /// The lab figures, one row per lab (empty without labs).
    pub fn labs_table(&self) -> String {
        let labs: Vec<&Figure> = self
            .figures
            .iter()
            .filter(|f| f.group == "lab" && f.id.ends_with(".mesh") && !f.extra.is_empty())
            .collect();
        if labs.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\nLabs (noctua lab: real processes in network namespaces, mDNS + auto-connect):\n\n\
             | nodes | ready spread s | mesh p50 s | mesh max s | from first ready s | sessions | closed early | broadcast once/expected | lost | dup | RSS p50 MiB | RSS max MiB | CPU/handshake ms | CPU/session from start ms | command p50 ms | command max ms | unanswered |\n\
             | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for f in labs {
            let x = |k: &str| f.extra.get(k).and_then(Value::as_f64);
            let n = x("nodes").unwrap_or(0.0) as usize;
            let fig = |suffix: &str| self.get(&format!("lab.n{n}.{suffix}"));
            let med = |suffix: &str| {
                fig(suffix).and_then(|f| f.noctua.as_ref().map(|s| s.summary.median))
            };
            let max =
                |suffix: &str| fig(suffix).and_then(|f| f.noctua.as_ref().map(|s| s.summary.max));
            let secs = |v: Option<f64>| opt(v.map(|m| m / 1e3));
            let cnt = |k: &str| {
                x(k).map(|v| format!("{v:.0}"))
                    .unwrap_or_else(|| "-".into())
            };
            out.push_str(&format!(
                "| {n} | {} | {} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                secs(x("ready_spread_ms")),
                opt(f.noctua.as_ref().map(|s| s.summary.median)),
                secs(x("mesh_max_ms")),
                secs(x("mesh_from_first_ready_ms")),
                cnt("sessions"),
                cnt("closed_before_mesh"),
                cnt("broadcast_exactly_once"),
                cnt("broadcast_expected"),
                cnt("broadcast_lost"),
                cnt("broadcast_duplicates"),
                opt(med("rss")),
                opt(max("rss")),
                opt(med("cpu_per_handshake")),
                opt(med("cpu_per_session_from_start")),
                opt(med("command_rtt")),
                opt(x("probe_max_ms")),
                cnt("probes_unanswered"),
            ));
        }
        out
    }

    /// The JSON document.
    pub fn json(&self) -> Value {
        let side = |s: &Option<Side>| match s {
            None => Value::Null,
            Some(s) => json!({
                "n": s.summary.n,
                "median": s.summary.median,
                "p99": s.summary.tail,
                "min": s.summary.min,
                "max": s.summary.max,
                "mean": s.summary.mean,
                "lost": s.lost,
            }),
        };
        let figures: serde_json::Map<String, Value> = self
            .figures
            .iter()
            .map(|f| {
                (
                    f.id.clone(),
                    json!({
                        "group": f.group,
                        "unit": f.unit,
                        "higher_is_better": f.higher_is_better,
                        "tail_meaning": if f.higher_is_better { "p1 (worst 1%)" } else { "p99" },
                        "noctua": side(&f.noctua),
                        "stock": side(&f.stock),
                        "raw": side(&f.raw),
                        "ratio_stock_p50": f.ratio(&f.stock),
                        "ratio_stock_p99": f.ratio_tail(&f.stock),
                        "ratio_raw_p50": f.ratio(&f.raw),
                        "ratio_raw_p99": f.ratio_tail(&f.raw),
                        "lost": f.lost(),
                        "notes": f.notes,
                        "extra": f.extra,
                    }),
                )
            })
            .collect();
        let (n, s, r) = self.lost_by_system();
        json!({
            "meta": self.meta,
            "figures": figures,
            "skipped": self.skipped.iter().map(|s| json!({"group": s.group, "reason": s.reason})).collect::<Vec<_>>(),
            "lost": { "noctua": n, "stock": s, "raw": r },
            "targets": self.targets().iter().map(|t| json!({
                "name": t.name,
                "value": t.value,
                "limit": t.limit,
                "at_most": t.at_most,
                "met": t.met(),
            })).collect::<Vec<_>>(),
        })
    }
}
