//! The audit chain's head kept outside the database, so that a rewrite of the whole log — every
//! entry rehashed from the first — is caught: the server appends the newest head (time, entry,
//! hash) to a file of the operator's choosing (`[audit] head_file`, on another disk or a
//! log host's mount) whenever it moved, and `holdfast audit verify`, `holdfast doctor` and the
//! security page check every line of that file against the log. Every backup also carries the
//! head it was taken at, which its restore drill checks against the restored log.

use crate::App;
use anyhow::Context as _;
use std::io::Write as _;
use std::path::Path;

/// Appends the current head to `file` unless its last line already names it. Returns whether
/// a line was written.
pub async fn append(app: &App, file: &Path) -> anyhow::Result<bool> {
    let Some((seq, hash)) = app.db.audit_head().await? else {
        return Ok(false);
    };
    let last = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.lines().last().map(str::to_owned));
    if last.is_some_and(|line| line.split_whitespace().nth(1) == Some(&seq.to_string())) {
        return Ok(false);
    }
    let line = format!("{} {seq} {hash}\n", app.now().to_rfc3339());
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("cannot open the audit head file {}", file.display()))?;
    out.write_all(line.as_bytes())
        .and_then(|()| out.sync_data())
        .with_context(|| format!("cannot append to {}", file.display()))?;
    Ok(true)
}

/// Checks every head in `file` against the log: the entry it names must still exist with the
/// same hash. `Ok(lines checked)`, or an error naming the first line that does not match.
pub async fn check(app: &App, file: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the audit head file {}", file.display()))?;
    let mut checked = 0;
    for (number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut parts = line.split_whitespace();
        let (Some(at), Some(seq), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
            anyhow::bail!(
                "{} line {}: not \"TIME ENTRY HASH\"",
                file.display(),
                number + 1
            );
        };
        let seq: i64 = seq
            .parse()
            .with_context(|| format!("{} line {}: bad entry number", file.display(), number + 1))?;
        match app.db.audit_hash_at(seq).await? {
            Some(found) if found == hash => checked += 1,
            Some(_) => anyhow::bail!(
                "audit entry {seq} no longer has the hash written to {} at {at} (line {}): the log was rewritten",
                file.display(),
                number + 1
            ),
            None => anyhow::bail!(
                "audit entry {seq}, written to {} at {at} (line {}), is gone: the log was cut or replaced",
                file.display(),
                number + 1
            ),
        }
    }
    Ok(checked)
}
