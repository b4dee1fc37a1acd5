//! `noctua-bench plot`: time to full mesh against the number of nodes, as an SVG drawn
//! from the JSON of one or more runs (the lab figures, and the in-process scale figures
//! for comparison), with the issue's goals marked. No plotting library: a few lines and
//! dots.

use std::fmt::Write as _;

use serde_json::Value;

/// One series: a name, a colour and its (nodes, seconds) points.
struct Series {
    name: &'static str,
    colour: &'static str,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// The series found in the runs' JSON documents.
fn series(docs: &[Value]) -> Vec<Series> {
    let mut lab_p50 = Vec::new();
    let mut lab_max = Vec::new();
    let mut scale = Vec::new();
    for doc in docs {
        let Some(figures) = doc["figures"].as_object() else {
            continue;
        };
        for (id, f) in figures {
            let parts: Vec<&str> = id.split('.').collect();
            let n = parts
                .get(1)
                .and_then(|p| p.strip_prefix('n'))
                .and_then(|n| n.parse::<f64>().ok());
            let (Some(n), Some(&"mesh")) = (n, parts.get(2)) else {
                continue;
            };
            match parts[0] {
                "lab" => {
                    if let Some(m) = f["noctua"]["median"].as_f64() {
                        lab_p50.push((n, m));
                    }
                    if let Some(m) = f["extra"]["mesh_max_ms"].as_f64() {
                        lab_max.push((n, m / 1e3));
                    }
                }
                "scale" => {
                    if let Some(m) = f["noctua"]["median"].as_f64() {
                        scale.push((n, m / 1e3));
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = vec![
        Series {
            name: "lab: slowest node (max)",
            colour: "#c0392b",
            dashed: false,
            points: lab_max,
        },
        Series {
            name: "lab: median node (p50)",
            colour: "#2e86c1",
            dashed: false,
            points: lab_p50,
        },
        Series {
            name: "in-process mesh (scale figure, p50 of runs)",
            colour: "#7f8c8d",
            dashed: true,
            points: scale,
        },
    ];
    for s in &mut out {
        s.points.retain(|(x, y)| x.is_finite() && y.is_finite());
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out.retain(|s| !s.points.is_empty());
    out
}

/// A "nice" step for about `ticks` ticks up to `max`.
fn step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

/// The SVG of time to full mesh against N, from the runs' JSON documents; `None` when they
/// hold no mesh figure.
pub fn mesh_svg(docs: &[Value], title: &str) -> Option<String> {
    let series = series(docs);
    if series.is_empty() {
        return None;
    }
    // Goals of issue 13: 64 nodes within 15 s, 128 within 60 s of the last ready.
    let goals = [(64.0, 15.0), (128.0, 60.0)];
    let all = series.iter().flat_map(|s| s.points.iter());
    let xmax = all
        .clone()
        .map(|p| p.0)
        .chain(goals.iter().map(|g| g.0))
        .fold(0.0, f64::max);
    let ymax = all
        .map(|p| p.1)
        .chain(goals.iter().map(|g| g.1))
        .fold(0.0, f64::max)
        * 1.1;
    let (w, h) = (720.0, 440.0);
    let (left, right, top, bottom) = (60.0, 20.0, 40.0, 110.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let xs = step(xmax, 8.0);
    let ys = step(ymax, 6.0);
    let xmax = (xmax / xs).ceil() * xs;
    let ymax = (ymax / ys).ceil() * ys;
    let px = |x: f64| left + x / xmax * pw;
    let py = |y: f64| top + ph - y / ymax * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        escape(title)
    );
    // Grid and ticks.
    let mut y = 0.0;
    while y <= ymax + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{0}" x2="{1}" y2="{0}" stroke="#e5e5e5"/><text x="{2}" y="{3}" text-anchor="end">{4}</text>"##,
            py(y),
            left + pw,
            left - 6.0,
            py(y) + 4.0,
            trim(y)
        );
        y += ys;
    }
    let mut x = 0.0;
    while x <= xmax + 1e-9 {
        let _ = writeln!(
            s,
            r##"<line x1="{0}" y1="{top}" x2="{0}" y2="{1}" stroke="#f0f0f0"/><text x="{0}" y="{2}" text-anchor="middle">{3}</text>"##,
            px(x),
            top + ph,
            top + ph + 16.0,
            trim(x)
        );
        x += xs;
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">nodes (N)</text>"#,
        left + pw / 2.0,
        top + ph + 34.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">seconds to full mesh after the last ready</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    // Goals.
    for (gx, gy) in goals {
        let _ = writeln!(
            s,
            r##"<path d="M{0} {1} l-6 -6 l12 0 z" fill="none" stroke="#27ae60" stroke-width="1.5"/><text x="{2}" y="{3}" fill="#27ae60">goal {4} s</text>"##,
            px(gx),
            py(gy),
            px(gx) - 58.0,
            py(gy) - 8.0,
            trim(gy)
        );
    }
    // Series.
    for (k, ser) in series.iter().enumerate() {
        let d: Vec<String> = ser
            .points
            .iter()
            .enumerate()
            .map(|(i, (x, y))| {
                format!(
                    "{}{:.1} {:.1}",
                    if i == 0 { "M" } else { " L" },
                    px(*x),
                    py(*y)
                )
            })
            .collect();
        let dash = if ser.dashed {
            r#" stroke-dasharray="5 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<path d="{}" fill="none" stroke="{}" stroke-width="2"{dash}/>"#,
            d.concat(),
            ser.colour
        );
        for (x, y) in &ser.points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"><title>N={} : {:.2} s</title></circle>"#,
                px(*x),
                py(*y),
                ser.colour,
                trim(*x),
                y
            );
        }
        let ly = top + ph + 56.0 + 16.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{left}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            left + 24.0,
            ser.colour,
            left + 30.0,
            ly + 4.0,
            escape(ser.name)
        );
    }
    s.push_str("</svg>\n");
    Some(s)
}

fn trim(x: f64) -> String {
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plot_has_a_dot_per_lab_and_nothing_without_mesh_figures() {
        let doc = serde_json::json!({"figures": {
            "lab.n32.mesh": {"noctua": {"median": 4.0}, "extra": {"mesh_max_ms": 6000.0}},
            "lab.n64.mesh": {"noctua": {"median": 9.0}, "extra": {"mesh_max_ms": 11000.0}},
            "lab.n64.rss": {"noctua": {"median": 20.0}, "extra": {}},
            "scale.n8.mesh": {"noctua": {"median": 500.0}, "extra": {}},
        }});
        let svg = mesh_svg(&[doc], "t").expect("an SVG");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Two labs × (p50, max) + one scale point.
        assert_eq!(svg.matches("<circle").count(), 5);
        assert!(svg.contains("N=64 : 11.00 s"));
        assert!(svg.contains("N=8 : 0.50 s"));
        assert!(mesh_svg(&[serde_json::json!({"figures": {}})], "t").is_none());
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(step(128.0, 8.0), 20.0);
        assert_eq!(step(66.0, 6.0), 20.0);
        assert_eq!(step(1.0, 5.0), 0.2);
    }
}
