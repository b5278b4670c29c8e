//! A runner reports a follower's failure as the typed error, and clears it once a page applies.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventsmith_core::{
    ErrorKind, FollowError, ItemStore, MemoryProjection, MemoryStore, Runner, SequencedItem,
};

#[derive(Debug, thiserror::Error)]
#[error("the view's database is down")]
struct ViewDown;

#[tokio::test]
async fn status_keeps_the_typed_failure_until_a_page_applies() {
    let store = MemoryStore::new();
    let item = SequencedItem {
        sequence_id: uuid::Uuid::new_v4(),
        position: 1,
        topic: "test.Item".to_owned(),
        payload: b"x".to_vec(),
    };
    let id = store.append(vec![item]).await.unwrap().end - 1;
    let failing = Arc::new(AtomicBool::new(true));
    let fail = failing.clone();
    let projection = MemoryProjection::new("status-test", 0u64, move |n: &mut u64, _| {
        if fail.load(Ordering::SeqCst) {
            return Err(ViewDown.into());
        }
        *n += 1;
        Ok(())
    });
    let runner = Runner::new(store.clone())
        .poll_interval(Duration::from_millis(10))
        .follow(projection)
        .start();

    let error = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(e) = runner.status("status-test").and_then(|s| s.last_error) {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the failure shows in the status");
    assert!(
        matches!(&*error, FollowError::Handler { id: at, .. } if *at == id),
        "{error:?}"
    );
    assert_eq!(error.kind(), ErrorKind::Other);
    assert!(
        error
            .source()
            .is_some_and(|s| s.downcast_ref::<ViewDown>().is_some()),
        "the handler's own error is the source: {error:?}"
    );

    failing.store(false, Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), runner.wait_for("status-test", id))
        .await
        .expect("the page applies once the view is back");
    let status = runner.status("status-test").unwrap();
    assert!(status.last_error.is_none(), "{status:?}");
    runner.stop().await;
}
