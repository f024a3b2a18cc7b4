//! The `worker` function: what depot does off the request path on AWS.
//!
//! - **Verifying upload sessions.** A session over `DEPOT_VERIFY_INLINE_BYTES` is taken by
//!   its completion request (the parts joined, or the single PUT copied aside, under
//!   `uploads/`) and left `VERIFYING`. The bucket sends the object-created event to
//!   EventBridge, whose rule invokes this function; it hashes the bytes and stages them,
//!   or marks the session `FAILED`. The client polls the session meanwhile.
//! - **The sweep**, on a schedule (`{"task": "gc"}`): verifications whose start was lost,
//!   expired sessions, and garbage collection (`DEPOT_GC_DRY_RUN`, `DEPOT_GC_GRACE_SECS`),
//!   as `depot gc` does.
use depot_core::registry::{session_of_key, Registry, UploadState};
use serde_json::{json, Value};

/// What an event asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Verify these sessions (from object-created events under `uploads/`).
    Verify(Vec<String>),
    /// The scheduled sweep.
    Sweep,
}

/// Reads an event: an EventBridge "Object Created" event from S3, an S3 notification
/// (`Records`), or the schedule's `{"task": "gc"}`.
pub fn task_of(event: &Value) -> Result<Task, String> {
    if event.get("task").and_then(Value::as_str) == Some("gc") {
        return Ok(Task::Sweep);
    }
    let mut keys = Vec::new();
    if let Some(k) = event.pointer("/detail/object/key").and_then(Value::as_str) {
        keys.push(k.to_string());
    }
    for r in event.get("Records").and_then(Value::as_array).into_iter().flatten() {
        if let Some(k) = r.pointer("/s3/object/key").and_then(Value::as_str) {
            // S3 notifications URL-encode the key (a space as '+'); session keys have neither.
            keys.push(k.to_string());
        }
    }
    if keys.is_empty() {
        return Err("unknown event: expected an S3 object-created event or {\"task\": \"gc\"}".into());
    }
    let mut ids: Vec<String> = keys.iter().filter_map(|k| session_of_key(k)).map(str::to_string).collect();
    ids.dedup();
    Ok(Task::Verify(ids))
}

/// The sweep's settings, from the environment.
#[derive(Debug, Clone)]
pub struct SweepSettings {
    pub dry_run: bool,
    pub grace_secs: i64,
}

impl SweepSettings {
    pub fn from_env() -> Result<Self, String> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        let dry_run = match var("DEPOT_GC_DRY_RUN").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(format!("DEPOT_GC_DRY_RUN must be true or false, not '{v}'")),
        };
        let grace_secs = match var("DEPOT_GC_GRACE_SECS") {
            None => 3600,
            Some(v) => v.parse().map_err(|_| format!("DEPOT_GC_GRACE_SECS must be a number of seconds, not '{v}'"))?,
        };
        Ok(SweepSettings { dry_run, grace_secs })
    }
}

/// Runs a task; answers its report.
pub async fn handle(registry: &Registry, task: Task, sweep: &SweepSettings) -> depot_core::Result<Value> {
    match task {
        Task::Verify(ids) => {
            let mut out = serde_json::Map::new();
            for id in ids {
                let state = registry.verify_upload(&id).await?;
                tracing::info!(session = %id, state = ?state, "upload session verified");
                out.insert(id, json!(state.map(state_name)));
            }
            Ok(json!({ "sessions": out }))
        }
        Task::Sweep => {
            let resumed = registry.resume_verifications().await?;
            let expired = registry.expire_uploads().await?;
            let gc = registry.collect_garbage(sweep.dry_run, sweep.grace_secs).await?;
            let bytes: u64 = gc.unreferenced.iter().map(|b| b.size).sum();
            tracing::info!(
                resumed,
                expired,
                scanned = gc.scanned,
                unreferenced = gc.unreferenced.len(),
                removed = gc.removed,
                old_renderings = gc.old_renderings.len(),
                dry_run = sweep.dry_run,
                "sweep done"
            );
            Ok(json!({
                "resumedVerifications": resumed,
                "expiredSessions": expired,
                "gc": {
                    "dryRun": sweep.dry_run,
                    "scanned": gc.scanned,
                    "referenced": gc.referenced,
                    "unreferenced": gc.unreferenced.len(),
                    "unreferencedBytes": bytes,
                    "removed": gc.removed,
                    "skipped": gc.skipped,
                    "oldRenderings": gc.old_renderings.len(),
                },
            }))
        }
    }
}

fn state_name(s: UploadState) -> Value {
    serde_json::to_value(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events() {
        let eb = json!({"source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": "b"}, "object": {"key": "uploads/0123456789abcdef0123456789abcdef.verify"}, "reason": "CopyObject"}});
        assert_eq!(task_of(&eb), Ok(Task::Verify(vec!["0123456789abcdef0123456789abcdef".into()])));
        let s3 =
            json!({"Records": [{"s3": {"object": {"key": "uploads/abc"}}}, {"s3": {"object": {"key": "blobs/x"}}}]});
        assert_eq!(task_of(&s3), Ok(Task::Verify(vec!["abc".into()])));
        assert_eq!(task_of(&json!({"task": "gc"})), Ok(Task::Sweep));
        assert!(task_of(&json!({"hello": 1})).is_err());
    }
}
