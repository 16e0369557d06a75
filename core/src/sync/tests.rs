use super::*;
use std::sync::Arc;

#[test]
fn a_poisoned_lock_still_yields_its_value() {
    let m = Arc::new(Mutex::new(7));
    let m2 = Arc::clone(&m);
    let _ = std::thread::spawn(move || {
        let _g = m2.lock().unwrap();
        panic!("poison it");
    })
    .join();
    assert!(m.is_poisoned());
    assert_eq!(*lock(&m), 7);
}
