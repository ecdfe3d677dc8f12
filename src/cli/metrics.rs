//! `sinter train --log FILE`: one record per training step and per evaluation, as JSON lines
//! (`.jsonl`) or CSV (`.csv`), so that runs can be compared and plotted with other tools.
//! Records carry the same fields in both formats; a value that does not apply is null (empty in CSV).

use super::{CliError, Result};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The fields of a record, in CSV column order.
const FIELDS: [&str; 9] = [
    "kind",
    "step",
    "epoch",
    "loss",
    "accuracy",
    "nats_per_char",
    "lr",
    "samples_per_sec",
    "seconds",
];

pub struct MetricsLog {
    path: PathBuf,
    csv: bool,
    out: BufWriter<File>,
}

/// One record: `kind` is "train" (a step) or "eval" (an evaluation on held-out data).
#[derive(Default)]
pub struct Record {
    pub kind: &'static str,
    pub step: u64,
    pub epoch: Option<f64>,
    pub loss: f64,
    /// Image models.
    pub accuracy: Option<f64>,
    /// Text models: the loss is in nats per character.
    pub nats_per_char: Option<f64>,
    pub lr: Option<f64>,
    pub samples_per_sec: Option<f64>,
    /// Since the run started.
    pub seconds: f64,
}

impl MetricsLog {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path)
            .map_err(|e| CliError::Usage(format!("--log {}: {e}", path.display())))?;
        let csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        let mut log = MetricsLog {
            path: path.to_path_buf(),
            csv,
            out: BufWriter::new(file),
        };
        if csv {
            let header = FIELDS.join(",");
            log.line(&header)?;
        }
        Ok(log)
    }

    fn line(&mut self, text: &str) -> Result<()> {
        // Flushed per record: a run that is killed keeps the records up to its last step.
        writeln!(self.out, "{text}")
            .and_then(|()| self.out.flush())
            .map_err(|e| CliError::Usage(format!("--log {}: {e}", self.path.display())))
    }

    pub fn write(&mut self, r: &Record) -> Result<()> {
        let num = |v: Option<f64>| match v {
            Some(v) if v.is_finite() => format!("{v}"),
            _ if self.csv => String::new(),
            _ => "null".to_string(),
        };
        let values = [
            if self.csv {
                r.kind.to_string()
            } else {
                format!("\"{}\"", r.kind)
            },
            r.step.to_string(),
            num(r.epoch),
            num(Some(r.loss)),
            num(r.accuracy),
            num(r.nats_per_char),
            num(r.lr),
            num(r.samples_per_sec),
            num(Some(r.seconds)),
        ];
        let text = if self.csv {
            values.join(",")
        } else {
            let pairs: Vec<String> = FIELDS
                .iter()
                .zip(&values)
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            format!("{{{}}}", pairs.join(","))
        };
        self.line(&text)
    }
}
