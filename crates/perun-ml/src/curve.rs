//! The training curve as an SVG picture.

use std::fmt::Write as _;

use crate::EpochMetrics;

/// Draws loss (left axis) and accuracy (right axis, 0..1) per epoch as an SVG document.
pub fn svg(title: &str, metrics: &[EpochMetrics]) -> String {
    let (w, h, pad) = (640.0, 360.0, 48.0);
    let epochs = metrics.len().max(2) as f64;
    let max_loss = metrics
        .iter()
        .flat_map(|m| std::iter::once(m.train_loss).chain(m.val_loss))
        .filter(|v| v.is_finite())
        .fold(1e-9, f64::max);
    let x = |e: usize| pad + (e as f64 - 1.0) / (epochs - 1.0) * (w - 2.0 * pad);
    let y_loss = |v: f64| h - pad - (v / max_loss).clamp(0.0, 1.0) * (h - 2.0 * pad);
    let y_acc = |v: f64| h - pad - v.clamp(0.0, 1.0) * (h - 2.0 * pad);
    let line = |pts: Vec<(f64, f64)>, colour: &str, dash: bool| {
        let d: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let dash = if dash { r#" stroke-dasharray="6 4""# } else { "" };
        format!(r##"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"##, d.join(" "))
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = write!(s, r#"<text x="{pad}" y="24" font-size="15">{}</text>"#, escape(title));
    let _ = write!(
        s,
        r#"<rect x="{pad}" y="{pad}" width="{}" height="{}" fill="none" stroke="grey"/>"#,
        w - 2.0 * pad,
        h - 2.0 * pad
    );
    let _ = write!(s, r#"<text x="{pad}" y="{}">epoch 1</text>"#, h - pad + 16.0);
    let _ =
        write!(s, r#"<text x="{}" y="{}" text-anchor="end">epoch {}</text>"#, w - pad, h - pad + 16.0, metrics.len());
    let _ = write!(s, r#"<text x="4" y="{}">loss {max_loss:.3}</text>"#, pad - 4.0);
    let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">accuracy 1.0</text>"#, w - 4.0, pad - 4.0);
    s.push_str(&line(metrics.iter().map(|m| (x(m.epoch), y_loss(m.train_loss))).collect(), "crimson", false));
    s.push_str(&line(
        metrics.iter().filter_map(|m| Some((x(m.epoch), y_loss(m.val_loss?)))).collect(),
        "crimson",
        true,
    ));
    s.push_str(&line(metrics.iter().map(|m| (x(m.epoch), y_acc(m.train_accuracy))).collect(), "steelblue", false));
    s.push_str(&line(
        metrics.iter().filter_map(|m| Some((x(m.epoch), y_acc(m.val_accuracy?)))).collect(),
        "steelblue",
        true,
    ));
    let _ = write!(
        s,
        r#"<text x="{}" y="{}">red: loss, blue: accuracy; solid: training, dashed: validation</text></svg>"#,
        pad,
        h - 12.0
    );
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
