//! Running commands within `command_timeout`, and writes confirmed by `WAIT`.

use redis::{FromRedisValue, Value};

use super::Shared;
use mesh_authz_core::revocation::StoreError;

/// Records a failure. On a cluster one node failing does not make the store unready (the
/// supervisor decides, from whether the cluster answers at all).
pub(super) fn failed(shared: &Shared, op: &str, e: &dyn std::fmt::Display) -> StoreError {
    shared.answered(false);
    shared.metrics.redis_errors.with_label_values(&[op]).inc();
    StoreError(format!("redis {op} failed: {e}"))
}

/// Runs one command within `command_timeout`.
pub(super) async fn run<T: FromRedisValue>(
    shared: &Shared,
    op: &str,
    cmd: &redis::Cmd,
) -> Result<T, StoreError> {
    let conn = shared
        .conn
        .load_full()
        .ok_or_else(|| StoreError("redis: not connected yet".into()))?;
    match tokio::time::timeout(shared.command_timeout, conn.cmd(cmd)).await {
        Ok(Ok(v)) => {
            shared.answered(true);
            Ok(v)
        }
        Ok(Err(e)) => Err(failed(shared, op, &e)),
        Err(_) => {
            shared.refresh.notify_one();
            Err(failed(shared, op, &"timed out"))
        }
    }
}

/// Runs one write and, with `min_replicas`, `WAIT`s for it in the same pipeline (on a cluster
/// the pipeline goes to the key's master): confirmed only once enough replicas hold it.
pub(super) async fn write<T: FromRedisValue>(
    shared: &Shared,
    cmd: redis::Cmd,
) -> Result<T, StoreError> {
    let conn = shared
        .conn
        .load_full()
        .ok_or_else(|| StoreError("redis: not connected yet".into()))?;
    let n = shared.min_replicas;
    let mut pipe = redis::pipe();
    pipe.add_command(cmd);
    let mut budget = shared.command_timeout;
    if n > 0 {
        let ms = u64::try_from(shared.replication_timeout.as_millis()).unwrap_or(u64::MAX);
        pipe.cmd("WAIT").arg(n).arg(ms.max(1));
        budget += shared.replication_timeout;
    }
    let mut values = match tokio::time::timeout(budget, conn.pipe(&pipe)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(failed(shared, "write", &e)),
        Err(_) => {
            shared.refresh.notify_one();
            return Err(failed(shared, "write", &"timed out"));
        }
    };
    if n > 0 {
        let acked = match values.pop() {
            Some(Value::Int(k)) => k,
            _ => return Err(failed(shared, "write", &"unexpected WAIT reply")),
        };
        if acked < i64::from(n) {
            // Redis answered: not a health problem, but the write was never promised.
            shared
                .metrics
                .redis_errors
                .with_label_values(&["replication"])
                .inc();
            return Err(StoreError(format!(
                "redis write not confirmed: {acked} of {n} replicas acknowledged it within {:?} \
                 (it may still be applied)",
                shared.replication_timeout
            )));
        }
    }
    let first = values.into_iter().next().unwrap_or(Value::Nil);
    let v = T::from_redis_value(first).map_err(|e| failed(shared, "write", &e))?;
    shared.answered(true);
    Ok(v)
}
