use super::*;

#[test]
fn send_window_takes_updates_and_refuses_zero_and_overflow() {
    let mut w = SendWindow::new(10);
    w.consume(10);
    assert_eq!(w.available(), 0);
    assert_eq!(w.increase(0), Err(FlowError::ZeroIncrement));
    w.increase(5).unwrap();
    assert_eq!(w.available(), 5);
    assert_eq!(w.increase(MAX_WINDOW), Err(FlowError::Overflow));
    assert_eq!(w.available(), 5, "a refused update changes nothing");
}

#[test]
fn a_lower_initial_window_can_make_a_send_window_negative() {
    let mut w = SendWindow::new(100);
    w.consume(80);
    w.adjust(-50).unwrap();
    assert_eq!(w.available(), 0);
    w.increase(40).unwrap();
    assert_eq!(w.available(), 10);
}

#[test]
fn receive_window_is_enforced_and_given_back_in_batches() {
    let mut w = RecvWindow::new(100);
    w.receive(60).unwrap();
    assert_eq!(w.receive(41), Err(FlowError::Exceeded));
    assert_eq!(w.release(30), None);
    assert_eq!(w.release(30), Some(60));
    w.receive(100).unwrap();
}
