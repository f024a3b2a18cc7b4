//! A stored blob always holds the bytes its digest names, whatever clients send to their
//! sessions' URLs: completion takes the bytes before it hashes them, a session's URLs take
//! nothing once it is closed, garbage collection removes what arrives after, and
//! `verify` finds a blob that does not match.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use depot_core::registry::{NewUpload, Registry, MAX_UPLOAD_SIZE};
use depot_core::store::{
    content_key, BlobInfo, BlobObject, BlobStore, ByteRange, ByteStream, Cond, Digests, Item, Table,
};
use depot_core::{Error, Result};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::common;
use crate::ports::send_to;
use crate::registry::{rds_registry, writer};

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// A blob store that, once armed, overwrites a key with other bytes right after the
/// next read starts: a client's PUT to its session's URL, landing while completion
/// hashes what it read.
struct Overwriting {
    inner: Arc<dyn BlobStore>,
    armed: Mutex<Option<(String, Vec<u8>)>>,
}

#[async_trait]
impl BlobStore for Overwriting {
    async fn put(&self, key: &str, body: ByteStream) -> Result<Digests> {
        self.inner.put(key, body).await
    }
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<BlobObject> {
        let obj = self.inner.get(key, range).await?;
        let armed = self.armed.lock().unwrap().take();
        if let Some((target, bytes)) = armed {
            self.inner.put(&target, depot_core::store::stream_from_bytes(bytes)).await?;
        }
        Ok(obj)
    }
    async fn head(&self, key: &str) -> Result<Option<u64>> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key).await
    }
    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        self.inner.rename(from, to).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        self.inner.copy(from, to).await
    }
    async fn presign_get(&self, key: &str, expires_in: Duration, filename: Option<&str>) -> Result<String> {
        self.inner.presign_get(key, expires_in, filename).await
    }
    async fn presign_put(&self, key: &str, size: u64, expires_in: Duration) -> Result<String> {
        self.inner.presign_put(key, size, expires_in).await
    }
    async fn start_multipart(&self, key: &str) -> Result<String> {
        self.inner.start_multipart(key).await
    }
    async fn presign_part(
        &self,
        key: &str,
        upload_id: &str,
        part: u32,
        size: u64,
        expires_in: Duration,
    ) -> Result<String> {
        self.inner.presign_part(key, upload_id, part, size, expires_in).await
    }
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Option<&[(u32, String)]>,
    ) -> Result<Option<Digests>> {
        self.inner.complete_multipart(key, upload_id, parts).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>> {
        self.inner.list(prefix).await
    }
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        self.inner.abort_multipart(key, upload_id).await
    }
}

/// Every content blob hashes to the sha256 its key names.
async fn every_blob_hashes_to_its_key(blobs: &dyn BlobStore) -> usize {
    let all = blobs.list("blobs").await.unwrap();
    for b in &all {
        let bytes = blobs.get(&b.key, None).await.unwrap().bytes().await.unwrap();
        assert!(b.key.ends_with(&sha256_hex(&bytes)), "{} holds bytes with sha256 {}", b.key, sha256_hex(&bytes));
    }
    all.len()
}

fn new_upload(size: u64, sha256: &str) -> NewUpload {
    NewUpload { project_id: "in".into(), repo_name: "r".into(), size, sha256: Some(sha256.into()) }
}

/// Hash, then an overwriting PUT, then publish: the stored blob still holds what was
/// hashed, and an honest upload of those bytes later gets them back.
pub(crate) async fn completion_publishes_what_it_hashed(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    let hooked = Arc::new(Overwriting { inner: blobs.clone(), armed: Mutex::new(None) });
    let reg = rds_registry(t, hooked.clone(), "in", &["r"]).await;
    let genuine = b"the genuine bytes of a chart, 48 bytes in all...".to_vec();
    let forged = b"the forged bytes that an attacker PUTs in later!".to_vec();
    assert_eq!(genuine.len(), forged.len());
    let sha = sha256_hex(&genuine);

    let opened = reg.open_upload(new_upload(genuine.len() as u64, &sha), "attacker", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &opened.targets[0].url, genuine.clone()).await;
    *hooked.armed.lock().unwrap() = Some((format!("uploads/{}", opened.session.id), forged.clone()));
    let staged = reg.complete_upload(opened.session.clone(), None, None).await.unwrap();
    assert!(hooked.armed.lock().unwrap().is_none(), "the overwrite happened during the completion");
    assert_eq!(staged.digest, format!("sha256:{sha}"));
    let stored = blobs.get(&content_key(&sha), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored, genuine, "the blob holds what completion hashed, not what came after");
    assert_eq!(every_blob_hashes_to_its_key(&*blobs).await, 1);

    // A later session bringing the forged bytes under the genuine digest is refused,
    // and the blob stays genuine.
    let liar = reg.open_upload(new_upload(forged.len() as u64, &sha), "attacker", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &liar.targets[0].url, forged.clone()).await;
    let refused = reg.complete_upload(liar.session, None, None).await;
    assert!(matches!(&refused, Err(Error::Invalid(m)) if m.contains("sha256 mismatch")), "{refused:?}");
    let stored = blobs.get(&content_key(&sha), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored, genuine);

    // A blob poisoned some other way (before this check existed) is healed by the next
    // verified upload of its bytes, which never trusts what is there.
    blobs.put(&content_key(&sha), depot_core::store::stream_from_bytes(forged.clone())).await.unwrap();
    let honest = reg.open_upload(new_upload(genuine.len() as u64, &sha), "admin", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &honest.targets[0].url, genuine.clone()).await;
    reg.complete_upload(honest.session, None, None).await.unwrap();
    let stored = blobs.get(&content_key(&sha), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored, genuine, "a verified upload replaces an unverified blob");
    assert!(blobs.list("tmp").await.unwrap().is_empty(), "completions leave no private copies");
}

/// Concurrent completions of one session answer the same blob, store it once and leave
/// nothing beside it; completing again with another sha256 is refused.
pub(crate) async fn concurrent_completions_store_one_blob(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    let reg = rds_registry(t, blobs.clone(), "in", &["r"]).await;
    let bytes = b"bytes completed six times at once".to_vec();
    let sha = sha256_hex(&bytes);
    let opened = reg.open_upload(new_upload(bytes.len() as u64, &sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &opened.targets[0].url, bytes.clone()).await;
    let runs: Vec<_> = (0..6)
        .map(|_| {
            let (reg, session) = (reg.clone(), opened.session.clone());
            tokio::spawn(async move { reg.complete_upload(session, None, None).await })
        })
        .collect();
    for r in runs {
        assert_eq!(r.await.unwrap().unwrap().digest, format!("sha256:{sha}"));
    }
    let stored: Vec<_> = blobs.list("blobs").await.unwrap().into_iter().map(|b| b.key).collect();
    assert_eq!(stored, [content_key(&sha)], "one blob and nothing beside it");
    assert!(blobs.list("tmp").await.unwrap().is_empty(), "no private copy is left");
    let session = reg.get_upload(&opened.session.id).await.unwrap();
    let again = reg.complete_upload(session.clone(), Some(&"0".repeat(64)), None).await;
    assert!(matches!(&again, Err(Error::Invalid(m)) if m.contains("differs")), "{again:?}");
    assert_eq!(reg.complete_upload(session, Some(&sha), None).await.unwrap().sha256, sha);
}

/// Completions racing the client's own PUTs of other bytes to the session's URL: a
/// completion that took the right bytes completes the session, and one that took the
/// others, after it, neither discards that session nor answers 400 for it.
pub(crate) async fn completions_racing_rewrites_keep_a_completed_session(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    let reg = rds_registry(t, blobs.clone(), "in", &["r"]).await;
    for round in 0..8 {
        let good = format!("the bytes declared, round {round}").into_bytes();
        let evil = format!("other bytes, within round {round}").into_bytes();
        assert_eq!(good.len(), evil.len());
        let sha = sha256_hex(&good);
        let opened = reg.open_upload(new_upload(good.len() as u64, &sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
        send_to(&*blobs, &opened.targets[0].url, good.clone()).await;
        let runs: Vec<_> = (0..8)
            .map(|i| {
                let (reg, blobs, session, url, evil) =
                    (reg.clone(), blobs.clone(), opened.session.clone(), opened.targets[0].url.clone(), evil.clone());
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        send_to(&*blobs, &url, evil).await;
                        None
                    } else {
                        Some(reg.complete_upload(session, None, None).await)
                    }
                })
            })
            .collect();
        let mut completed = 0;
        for r in runs {
            match r.await.unwrap() {
                Some(Ok(staged)) => {
                    assert_eq!(staged.sha256, sha);
                    completed += 1;
                }
                Some(Err(e)) => assert!(matches!(e, Error::Invalid(_) | Error::NotFound { .. }), "{e:?}"),
                None => {}
            }
        }
        if completed > 0 {
            let session = reg.get_upload(&opened.session.id).await.unwrap();
            assert_eq!(session.state, depot_core::registry::UploadState::Complete, "round {round}");
            let staged = reg.complete_upload(session, None, None).await.unwrap();
            let stored = blobs.get(&staged.key, None).await.unwrap().bytes().await.unwrap();
            assert_eq!(stored, good, "round {round}");
        }
    }
}

/// A closed session's URLs take nothing (checked by the local route before it stores),
/// and bytes that reach `uploads/` anyway (S3 cannot revoke a presigned URL) are garbage.
pub(crate) async fn closed_sessions_take_no_bytes(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    let reg = rds_registry(t.clone(), blobs.clone(), "in", &["r"]).await;
    let bytes = b"twelve bytes".to_vec();
    let sha = sha256_hex(&bytes);
    let open = || reg.open_upload(new_upload(bytes.len() as u64, &sha), "u", MAX_UPLOAD_SIZE);

    let completed = open().await.unwrap();
    let key = format!("uploads/{}", completed.session.id);
    reg.accepts_upload_bytes(&key).await.unwrap();
    send_to(&*blobs, &completed.targets[0].url, bytes.clone()).await;
    reg.complete_upload(completed.session.clone(), None, None).await.unwrap();
    assert_eq!(blobs.head(&key).await.unwrap(), None, "completion leaves nothing under the session's key");
    let aborted = open().await.unwrap();
    reg.discard_upload(&aborted.session).await.unwrap();
    let expired = open().await.unwrap();
    let past = Item::from_iter([("expiresAt".to_string(), json!("2001-01-01T00:00:00.000Z"))]);
    t.update(&depot_core::store::schema::upload_key(&expired.session.id), past, &[], Cond::Exists).await.unwrap();
    let live = open().await.unwrap();
    for (what, id) in
        [("completed", &completed.session.id), ("aborted", &aborted.session.id), ("expired", &expired.session.id)]
    {
        for key in [format!("uploads/{id}"), format!("uploads/{id}.parts/0123456789abcdef0123456789abcdef/00001")] {
            let refused = reg.accepts_upload_bytes(&key).await;
            assert!(
                matches!(&refused, Err(Error::Conflict { message, .. }) if message.contains("not open")),
                "{what}: {refused:?}"
            );
        }
    }
    reg.accepts_upload_bytes(&format!("uploads/{}", live.session.id)).await.unwrap();
    reg.accepts_upload_bytes("blobs/sha256/ab/cd/anything").await.unwrap();

    // Bytes that arrive after completion (or for an aborted session) are collected; an
    // open session's are kept.
    for id in [&completed.session.id, &aborted.session.id] {
        blobs.put(&format!("uploads/{id}"), depot_core::store::stream_from_bytes(b"late".to_vec())).await.unwrap();
    }
    send_to(&*blobs, &live.targets[0].url, bytes.clone()).await;
    let report = reg.collect_garbage(false, 0).await.unwrap();
    let removed: Vec<_> =
        report.unreferenced.iter().map(|b| b.key.as_str()).filter(|k| k.starts_with("uploads/")).collect();
    assert_eq!(removed.len(), 2, "{report:?}");
    for id in [&completed.session.id, &aborted.session.id] {
        assert_eq!(blobs.head(&format!("uploads/{id}")).await.unwrap(), None);
    }
    assert_eq!(blobs.head(&format!("uploads/{}", live.session.id)).await.unwrap(), Some(bytes.len() as u64));
    reg.complete_upload(live.session, None, None).await.unwrap();
}

/// `verify` reads every blob back: a clean store passes, a blob whose bytes differ from
/// its key and from its version is named, and so is a missing one.
pub(crate) async fn verify_finds_bad_blobs(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewVersion, VerifyScope};
    let reg = rds_registry(t, blobs.clone(), "in", &["r", "s"]).await;
    let mut keys = vec![];
    for (repo, body) in [("r", &b"first chart bytes"[..]), ("r", b"second chart bytes"), ("s", b"third")] {
        let blob = reg.store_content(depot_core::store::stream_from_bytes(body.to_vec())).await.unwrap();
        keys.push(blob.key.clone());
        let code = format!("c{}", keys.len());
        let nv = NewVersion::new("in", repo, &format!("rds://{code}"), &code, RepoType::Rds, "1.0.0", blob);
        reg.create_version(nv, &writer()).await.unwrap();
    }
    let check = |scope: VerifyScope| {
        let reg: Registry = reg.clone();
        async move {
            let (targets, total) = reg.blobs_to_verify(&scope).await.unwrap();
            let report = reg.verify_blobs(&targets, |_| {}).await.unwrap();
            (report, total)
        }
    };
    let (clean, total) = check(VerifyScope::default()).await;
    assert_eq!((clean.checked, clean.bad.len()), (3, 0), "{clean:?}");
    assert_eq!(total, clean.bytes);
    // Poisoned bytes and a missing blob.
    blobs.put(&keys[0], depot_core::store::stream_from_bytes(b"poisoned".to_vec())).await.unwrap();
    blobs.delete(&keys[2]).await.unwrap();
    let (bad, _) = check(VerifyScope::default()).await;
    let named: Vec<_> = bad.bad.iter().map(|b| b.key.as_str()).collect();
    assert!(named.contains(&keys[0].as_str()) && named.contains(&keys[2].as_str()), "{bad:?}");
    assert!(bad.bad.iter().any(|b| b.key == keys[0] && b.why.contains("its key names")), "{bad:?}");
    assert!(bad.bad.iter().any(|b| b.key == keys[0] && b.why.contains("version [1.0.0]")), "{bad:?}");
    assert!(!named.contains(&keys[1].as_str()));
    // One repository only, and a sample.
    let (one, _) = check(VerifyScope { repo: Some(("in".into(), "s".into())), sample: None }).await;
    assert_eq!(one.bad.iter().map(|b| b.key.as_str()).collect::<Vec<_>>(), [keys[2].as_str()], "{one:?}");
    let (sampled, _) = check(VerifyScope { repo: None, sample: Some(1) }).await;
    assert_eq!(sampled.checked + sampled.bad.iter().filter(|b| b.why.starts_with("missing")).count(), 1);
}

/// Overwriting PUTs fired at random moments around a few hundred completions: every
/// completion either answered the digest of the bytes now stored, or failed, and every
/// blob hashes to its key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
pub(crate) async fn overwrites_racing_completions_never_poison_a_blob() {
    let (t, _g1) = common::embedded_table().await;
    let (blobs, _g2) = common::fs_blobs().await;
    let reg = rds_registry(t, blobs.clone(), "in", &["r"]).await;
    let (mut ok, mut refused) = (0, 0);
    let mut seed = 0x9e3779b97f4a7c15u64;
    for i in 0..300u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let genuine = format!("genuine payload {i:05} {}", "g".repeat(64)).into_bytes();
        let forged = format!("forged  payload {i:05} {}", "f".repeat(64)).into_bytes();
        let sha = sha256_hex(&genuine);
        let opened = reg.open_upload(new_upload(genuine.len() as u64, &sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
        send_to(&*blobs, &opened.targets[0].url, genuine.clone()).await;
        let key = format!("uploads/{}", opened.session.id);
        // The overwrite lands before, during or after the completion.
        let delay = Duration::from_micros(seed % 2000);
        let head_start = Duration::from_micros((seed >> 16) % 2000);
        let attacker = {
            let blobs = blobs.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                blobs.put(&key, depot_core::store::stream_from_bytes(forged)).await.unwrap();
            })
        };
        tokio::time::sleep(head_start).await;
        match reg.complete_upload(opened.session, None, None).await {
            Ok(staged) => {
                assert_eq!(staged.digest, format!("sha256:{sha}"));
                let stored = blobs.get(&content_key(&sha), None).await.unwrap().bytes().await.unwrap();
                assert_eq!(stored, genuine, "iteration {i}");
                ok += 1;
            }
            Err(Error::Invalid(m)) if m.contains("mismatch") || m.contains("no bytes") => refused += 1,
            Err(e) => panic!("iteration {i}: {e:?}"),
        }
        attacker.await.unwrap();
    }
    let checked = every_blob_hashes_to_its_key(&*blobs).await;
    eprintln!("300 completions raced by overwriting PUTs: {ok} stored, {refused} refused; {checked} blobs, all sound");
    assert_eq!(ok + refused, 300);
    assert!(
        ok > 0 && refused > 0,
        "overwrites landed on both sides of the completions: {ok} stored, {refused} refused"
    );
}

/// A forced repository delete wins against writers: an upload that commits after the
/// delete listed the repository's packages is refused, nothing of the old repository
/// shows in one created again under its name, its counters start at zero, and a session
/// opened in the old repository cannot stage for the new one.
pub(crate) async fn forced_delete_wins_against_commits(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::model::RepoType;
    use depot_core::registry::{NewRepository, NewVersion};
    let plain = rds_registry(t.clone(), blobs.clone(), "in", &["r"]).await;
    let nv =
        |code: &str, blob| NewVersion::new("in", "r", &format!("rds://{code}"), code, RepoType::Rds, "1.0.0", blob);
    let blob = plain.store_content(depot_core::store::stream_from_bytes(b"a".to_vec())).await.unwrap();
    plain.create_version(nv("a", blob), &writer()).await.unwrap();
    let bytes = b"staged before the delete".to_vec();
    let sha = sha256_hex(&bytes);
    let session = plain.open_upload(new_upload(bytes.len() as u64, &sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &session.targets[0].url, bytes.clone()).await;

    let late: Arc<Mutex<Option<Result<()>>>> = Arc::default();
    let hooked = crate::accounts::Hooked::new(t.clone());
    {
        let (plain, late) = (plain.clone(), late.clone());
        let blob = plain.store_content(depot_core::store::stream_from_bytes(b"b".to_vec())).await.unwrap();
        let landing = NewVersion::new("in", "r", "rds://b", "b", RepoType::Rds, "1.0.0", blob);
        let partition = depot_core::store::schema::repo_partition("in", "r");
        hooked.arm(crate::accounts::After::Query(partition), async move {
            let r = plain.create_version(landing, &writer()).await.map(|_| ());
            *late.lock().unwrap() = Some(r);
        });
    }
    let deleting = Registry::new(hooked.clone(), blobs.clone());
    deleting.delete_repository("in", "r", true).await.unwrap();
    let landed = late.lock().unwrap().take().expect("the hook ran");
    assert!(matches!(&landed, Err(Error::Conflict { message, .. }) if message.contains("being deleted")), "{landed:?}");

    let nr = NewRepository {
        project_id: "in".into(),
        name: "r".into(),
        repo_type: RepoType::Rds,
        public: false,
        description: None,
        allow_overwrite: None,
        configuration: None,
    };
    plain.create_repository(nr, "admin").await.unwrap();
    assert!(plain.list_packages("in", "r").await.unwrap().is_empty(), "nothing of the old repository");
    assert_eq!(plain.get_repository("in", "r").await.unwrap().package_count, 0);
    assert!(plain.get_version("in", "r", "rds://b", "1.0.0").await.unwrap_err().is_not_found());
    let refused = plain.complete_upload(session.session, None, None).await;
    assert!(matches!(&refused, Err(Error::NotFound { message, .. }) if message.contains("was deleted")), "{refused:?}");
    assert!(plain.resolve_staged("in", "r", &sha).await.unwrap_err().is_not_found());
    // The new repository takes uploads as usual.
    let blob = plain.store_content(depot_core::store::stream_from_bytes(b"c".to_vec())).await.unwrap();
    plain.create_version(nv("c", blob), &writer()).await.unwrap();
    assert_eq!(plain.get_repository("in", "r").await.unwrap().package_count, 1);
}

/// A session over the inline limit is only taken by its completion and verified after:
/// what reaches its URL after the take changes nothing, garbage collection keeps the
/// taken bytes, a second start does no work, a mismatch leaves the session `FAILED` with
/// its reason, and a start that was lost (a verifier that died) is resumed by the sweep.
pub(crate) async fn verification_off_the_request_path(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::registry::{Completion, UploadState};
    use depot_core::store::schema::upload_key;
    let reg = rds_registry(t.clone(), blobs.clone(), "in", &["r"]).await;
    let genuine = b"the genuine bytes of a chart, 48 bytes in all...".to_vec();
    let forged = b"the forged bytes that an attacker PUTs in later!".to_vec();
    let sha = sha256_hex(&genuine);
    let take = |session| reg.complete_upload_within(session, None, None, 0);

    let opened = reg.open_upload(new_upload(genuine.len() as u64, &sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
    let id = opened.session.id.clone();
    send_to(&*blobs, &opened.targets[0].url, genuine.clone()).await;
    let Completion::Verifying(taken) = take(opened.session.clone()).await.unwrap() else { panic!("verified inline") };
    assert_eq!(taken.state, UploadState::Verifying);
    assert_eq!(reg.get_upload(&id).await.unwrap().state, UploadState::Verifying);
    assert!(
        reg.accepts_upload_bytes(&format!("uploads/{id}")).await.is_err(),
        "a session being verified takes no more bytes"
    );
    // A presigned S3 PUT cannot be refused: it lands on the session's key, not on the
    // bytes that were taken.
    blobs.put(&format!("uploads/{id}"), depot_core::store::stream_from_bytes(forged.clone())).await.unwrap();
    // Completing again answers the same; a collection keeps the taken bytes.
    let again = reg.complete_upload_within(reg.get_upload(&id).await.unwrap(), Some(&sha), None, 0).await.unwrap();
    assert!(matches!(again, Completion::Verifying(_)));
    reg.collect_garbage(false, 0).await.unwrap();
    assert_eq!(blobs.head(&format!("uploads/{id}.verify")).await.unwrap(), Some(48), "gc keeps what is verified");

    assert_eq!(reg.verify_upload(&id).await.unwrap(), Some(UploadState::Complete));
    assert_eq!(reg.verify_upload(&id).await.unwrap(), Some(UploadState::Complete), "a second start does nothing");
    let staged = reg.resolve_staged("in", "r", &format!("sha256:{sha}")).await.unwrap();
    assert_eq!(staged.session_id, id);
    let stored = blobs.get(&content_key(&sha), None).await.unwrap().bytes().await.unwrap();
    assert_eq!(stored, genuine, "what was taken is what is published");
    for k in [format!("uploads/{id}"), format!("uploads/{id}.verify")] {
        assert_eq!(blobs.head(&k).await.unwrap(), None, "{k} is left to nobody");
    }
    assert_eq!(reg.complete_upload(reg.get_upload(&id).await.unwrap(), None, None).await.unwrap().sha256, sha);

    // Bytes that are not what was declared: FAILED, with the reason, and nothing kept.
    let liar = reg.open_upload(new_upload(forged.len() as u64, &sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &liar.targets[0].url, forged.clone()).await;
    take(liar.session.clone()).await.unwrap();
    assert_eq!(reg.verify_upload(&liar.session.id).await.unwrap(), Some(UploadState::Failed));
    let failed = reg.get_upload(&liar.session.id).await.unwrap();
    assert_eq!(failed.state, UploadState::Failed);
    assert!(failed.failure.as_deref().unwrap().contains("sha256 mismatch"), "{failed:?}");
    let refused = reg.complete_upload(failed, None, None).await;
    assert!(
        matches!(&refused, Err(Error::Invalid(m)) if m.contains("failed verification") && m.contains("sha256 mismatch")),
        "{refused:?}"
    );
    for k in [format!("uploads/{}", liar.session.id), format!("uploads/{}.verify", liar.session.id)] {
        assert_eq!(blobs.head(&k).await.unwrap(), None, "{k} was dropped");
    }

    // Another verifier's live claim: this start leaves the session alone, and so does the
    // sweep. Once the claim has lapsed (its verifier died), the sweep finishes it.
    let other = b"a third chart, verified by whoever is alive".to_vec();
    let other_sha = sha256_hex(&other);
    let third = reg.open_upload(new_upload(other.len() as u64, &other_sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &third.targets[0].url, other.clone()).await;
    take(third.session.clone()).await.unwrap();
    let claim = |c: String| Item::from_iter([("verifier".to_string(), json!(c))]);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let key = upload_key(&third.session.id);
    t.update(&key, claim(format!("{now}/elsewhere")), &[], Cond::Exists).await.unwrap();
    assert_eq!(reg.verify_upload(&third.session.id).await.unwrap(), Some(UploadState::Verifying));
    assert_eq!(reg.resume_verifications().await.unwrap(), 0);
    t.update(&key, claim(format!("{}/elsewhere", now - 3600)), &[], Cond::Exists).await.unwrap();
    assert_eq!(reg.resume_verifications().await.unwrap(), 1);
    assert_eq!(reg.get_upload(&third.session.id).await.unwrap().state, UploadState::Complete);
    assert!(blobs.list("tmp").await.unwrap().is_empty(), "no private copy is left");

    // Aborting a completed session forgets what it staged: its digest publishes nothing.
    reg.abort_upload(reg.get_upload(&third.session.id).await.unwrap()).await.unwrap();
    let gone = reg.resolve_staged("in", "r", &format!("sha256:{other_sha}")).await;
    assert!(matches!(&gone, Err(e) if e.is_not_found()), "{gone:?}");

    // A completion refused before any bytes came (with a mistaken sha256) changes
    // nothing: the right one completes afterwards.
    let late = reg.open_upload(NewUpload { sha256: None, ..new_upload(other.len() as u64, &other_sha) }, "u", MAX_UPLOAD_SIZE).await.unwrap();
    let early = reg.complete_upload_within(late.session.clone(), Some(&"0".repeat(64)), None, 0).await;
    assert!(matches!(&early, Err(Error::Invalid(m)) if m.contains("no bytes")), "{early:?}");
    let reread = reg.get_upload(&late.session.id).await.unwrap();
    assert_eq!((reread.state, reread.sha256.as_deref()), (UploadState::Open, None), "{reread:?}");
    send_to(&*blobs, &late.targets[0].url, other.clone()).await;
    take_with(&reg, reread, &other_sha).await;
    assert_eq!(reg.verify_upload(&late.session.id).await.unwrap(), Some(UploadState::Complete));

    // Completing a session that was aborted meanwhile: not found, not "no bytes".
    let aborted = reg.open_upload(new_upload(other.len() as u64, &other_sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &aborted.targets[0].url, other.clone()).await;
    reg.abort_upload(aborted.session.clone()).await.unwrap();
    let after = reg.complete_upload_within(aborted.session, None, None, 0).await;
    assert!(matches!(&after, Err(e) if e.is_not_found()), "{after:?}");
}

async fn take_with(reg: &Registry, session: depot_core::registry::UploadSession, sha: &str) {
    let taken = reg.complete_upload_within(session, Some(sha), None, 0).await.unwrap();
    assert!(matches!(taken, depot_core::registry::Completion::Verifying(_)));
}

/// A collector's mark on an upload's bytes holds its commit back only while the request
/// has time: within a deadline (a Lambda invocation's) the commit answers 503 with
/// `Retry-After` a margin before it, not after the wait's own 30 s. The session stays
/// open, and completes once the mark is gone.
pub(crate) async fn a_marked_blob_answers_503_before_the_deadline(t: Arc<dyn Table>, blobs: Arc<dyn BlobStore>) {
    use depot_core::registry::UploadState;
    use depot_core::store::{schema::gc_mark_key, TTL_ATTR};
    let reg = rds_registry(t.clone(), blobs.clone(), "in", &["r"]).await;
    let bytes = b"bytes that a collector is about to remove".to_vec();
    let sha = sha256_hex(&bytes);
    let mark_key = gc_mark_key(&content_key(&sha));
    let mut mark = mark_key.item();
    mark.insert(TTL_ATTR.into(), json!(time::OffsetDateTime::now_utc().unix_timestamp() + 600));
    t.put(mark, Cond::None).await.unwrap();
    let opened = reg.open_upload(new_upload(bytes.len() as u64, &sha), "u", MAX_UPLOAD_SIZE).await.unwrap();
    send_to(&*blobs, &opened.targets[0].url, bytes.clone()).await;

    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs(5);
    let refused = depot_core::deadline::scope(deadline, reg.complete_upload(opened.session.clone(), None, None)).await;
    let took = started.elapsed();
    assert!(matches!(&refused, Err(e @ Error::Unavailable { .. }) if e.retry_after().is_some()), "{refused:?}");
    assert!(took >= Duration::from_millis(1500), "it waited for the mark: {took:?}");
    assert!(took < Duration::from_secs(5) - depot_core::deadline::MARGIN / 2, "it answered before the deadline: {took:?}");
    assert_eq!(reg.get_upload(&opened.session.id).await.unwrap().state, UploadState::Open);

    t.delete(&mark_key, Cond::None).await.unwrap();
    let staged = reg.complete_upload(reg.get_upload(&opened.session.id).await.unwrap(), None, None).await.unwrap();
    assert_eq!(staged.sha256, sha);
}
