//! Several owners ship, publish, read and release at once on one memory
//! node: every answer is right, nothing deadlocks, and the pool ends empty.

mod common;

use std::sync::Arc;

use common::{build_image, image_id, publish};
use o3_memnode::{Direction, Found, GetRequest, KeyLookup, MemoryNode, OwnerId, ScanRequest};
use o3_storage::key::ValueKind;

#[test]
fn owners_work_in_parallel_without_interference() {
    let node = Arc::new(MemoryNode::with_capacity(16 << 20).unwrap());
    let threads: Vec<_> = (0..4u64)
        .map(|owner| {
            let node = Arc::clone(&node);
            std::thread::spawn(move || {
                let owner = OwnerId(owner);
                for round in 0..40u64 {
                    let value = format!("owner {} round {round}", owner.0).into_bytes();
                    let image = build_image(
                        image_id(round),
                        &[(b"k".to_vec(), round + 1, ValueKind::Value, value.clone())],
                    );
                    let region = publish(&node, owner, &image);
                    let get = GetRequest {
                        lookups: vec![KeyLookup {
                            key: b"k".to_vec(),
                            snapshot: 1000,
                            images: vec![image.meta.id],
                        }],
                    };
                    let answers = node.get(owner, &get).unwrap().answers;
                    assert!(matches!(&answers[0][0], Found::Value { value: v, .. } if *v == value));
                    let scan = ScanRequest {
                        images: vec![image.meta.id],
                        lower: Vec::new(),
                        upper: None,
                        direction: Direction::Backward,
                        limit: 4,
                        snapshot: 1000,
                        resume_after: None,
                    };
                    assert_eq!(node.scan(owner, &scan).unwrap().entries[0].value, value);
                    assert_eq!(node.release(owner, &region).unwrap(), Some(image.meta.id));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let stats = node.stats();
    assert_eq!((stats.published_images, stats.pool.used), (0, 0));
    assert_eq!(stats.pool.free_extents, 1);
}
