use super::*;

#[test]
fn ports_are_bindable_below_the_ephemeral_range_and_never_repeat() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
    let end = ephemeral_start();
    for p in ports {
        assert!((LOWEST..end).contains(&p), "{p} outside {LOWEST}..{end}");
        TcpListener::bind(("127.0.0.1", p)).expect("still free");
    }
}
