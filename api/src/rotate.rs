//! `kai-api rotate-credentials`: re-seals every stored credential under the current
//! `KAI_ENCRYPTION_KEY`, in batches of rows still under another key, each batch its own
//! transaction. Interrupted, it is run again and carries on; once it reports none left, the
//! previous keys can be removed from `KAI_ENCRYPTION_KEYS_PREVIOUS`.

use kai_common::credentials::KeyRing;
use sqlx::PgPool;
use uuid::Uuid;

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Rows re-sealed under the current key.
    pub resealed: u64,
    /// Rows that could not be opened (their key is unknown, or they were altered), by id; they
    /// keep their old sealing.
    pub failed: Vec<(Uuid, String)>,
}

/// Re-seals every row not under the current key, `batch` rows per transaction, calling
/// `progress(done, total)` after each batch.
pub async fn rotate_credentials(
    db: &PgPool,
    keys: &KeyRing,
    batch: i64,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<Rotation> {
    let current = keys.current_key_id().to_owned();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM user_credentials WHERE key_id <> $1")
        .bind(&current)
        .fetch_one(db)
        .await?;
    let total = u64::try_from(total).unwrap_or_default();
    let mut rotation = Rotation::default();
    let mut failed = std::collections::BTreeMap::new();
    // Passes until one re-seals nothing: a row written under an old key by a replica not yet
    // restarted, with an id behind the walk, is found by the next pass.
    loop {
        let before = rotation.resealed;
        let pass = reseal_pass(
            db,
            keys,
            &current,
            batch,
            &mut failed,
            |resealed, failures| {
                let done = before + resealed + failures;
                progress(done, total.max(done));
            },
        )
        .await?;
        rotation.resealed += pass;
        if pass == 0 {
            break;
        }
    }
    rotation.failed = failed.into_iter().collect();
    Ok(rotation)
}

/// One walk over the rows not under the current key, by id; returns how many it re-sealed.
/// Rows locked by a concurrent change are waited for, never skipped.
async fn reseal_pass(
    db: &PgPool,
    keys: &KeyRing,
    current: &str,
    batch: i64,
    failed: &mut std::collections::BTreeMap<Uuid, String>,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<u64> {
    let mut resealed = 0;
    // Rows are walked by id, so a row that cannot be opened is passed, not retried for ever.
    let mut after = Uuid::nil();
    loop {
        let mut tx = db.begin().await?;
        let rows: Vec<(Uuid, Uuid, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, user_id, key_id, encrypted_secret FROM user_credentials \
             WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT $3 FOR UPDATE",
        )
        .bind(current)
        .bind(after)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else {
            return Ok(resealed);
        };
        after = last.0;
        for (id, owner, key_id, sealed) in rows {
            match keys.open(id, owner, &key_id, &sealed) {
                Ok(secret) => {
                    let sealing = keys.seal(id, owner, &secret);
                    sqlx::query(
                        "UPDATE user_credentials SET encrypted_secret = $2, key_id = $3 \
                         WHERE id = $1",
                    )
                    .bind(id)
                    .bind(&sealing.bytes)
                    .bind(&sealing.key_id)
                    .execute(&mut *tx)
                    .await?;
                    resealed += 1;
                }
                Err(error) => {
                    failed.insert(id, error.to_string());
                }
            }
        }
        tx.commit().await?;
        progress(resealed, failed.len() as u64);
    }
}
