//! Profiled steps as a Chrome trace (the trace event format that Perfetto and chrome://tracing
//! open): kernels on one track, steps and their host phases on another.

use sinter_model::profile::StepProfile;
use std::fmt::Write as _;

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number: µs with nanosecond precision; non-finite values (which JSON cannot hold) as 0.
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "0".into()
    }
}

/// Track (`tid`) of the kernels in a trace.
pub const TRACE_KERNEL_TID: u32 = 1;
/// Track of the host-side events (steps and their phases).
pub const TRACE_HOST_TID: u32 = 2;

/// The Chrome trace event format (opens in Perfetto or chrome://tracing): one complete event
/// (`"ph":"X"`) per kernel on the kernel track, args holding its kernel, tag, shapes, FLOPs and
/// bytes; each step and its host phases on the host track. Times are µs from the first step.
pub fn chrome_trace(profiles: &[StepProfile], device: &str) -> String {
    let origin = profiles.first().map(|p| p.started);
    let mut events: Vec<String> = vec![
        format!(
            r#"{{"name":"process_name","ph":"M","pid":1,"tid":0,"args":{{"name":{}}}}}"#,
            json_string(&format!("sinter · {device}"))
        ),
        format!(
            r#"{{"name":"thread_name","ph":"M","pid":1,"tid":{TRACE_KERNEL_TID},"args":{{"name":{}}}}}"#,
            json_string(&format!(
                "kernels ({})",
                profiles.first().map_or("", |p| p.timing.as_str())
            ))
        ),
        format!(
            r#"{{"name":"thread_name","ph":"M","pid":1,"tid":{TRACE_HOST_TID},"args":{{"name":"host"}}}}"#
        ),
    ];
    for (step, p) in profiles.iter().enumerate() {
        let base = origin.map_or(0.0, |o| {
            p.started.saturating_duration_since(o).as_secs_f64() * 1e6
        });
        events.push(format!(
            r#"{{"name":{},"cat":"step","ph":"X","ts":{},"dur":{},"pid":1,"tid":{TRACE_HOST_TID},"args":{{"step":{step},"kernels":{}}}}}"#,
            json_string(&format!("step {step}")),
            num(base),
            num(p.wall_us),
            p.kernels.len()
        ));
        for h in &p.host {
            events.push(format!(
                r#"{{"name":{},"cat":"host","ph":"X","ts":{},"dur":{},"pid":1,"tid":{TRACE_HOST_TID},"args":{{"step":{step}}}}}"#,
                json_string(&h.name),
                num(base + h.start_us),
                num(h.duration_us)
            ));
        }
        for k in &p.kernels {
            events.push(format!(
                r#"{{"name":{},"cat":"kernel","ph":"X","ts":{},"dur":{},"pid":1,"tid":{TRACE_KERNEL_TID},"args":{{"kernel":{},"tag":{},"shapes":{},"flops":{},"bytes":{},"step":{step},"host_timed":{}}}}}"#,
                json_string(&k.tag),
                num(base + k.start_us),
                num(k.duration_us),
                json_string(&k.kernel),
                json_string(&k.tag),
                json_string(&k.shapes),
                k.flops,
                k.bytes,
                p.host_timed
            ));
        }
    }
    format!(
        "{{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n{}\n]}}\n",
        events.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(
            json_string("a\"b\\c\nd\u{1}·"),
            "\"a\\\"b\\\\c\\nd\\u0001·\""
        );
    }
}
