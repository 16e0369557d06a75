use clap::Parser as _;

use super::*;

// The defaults are written twice, as clap attributes (so `--help` shows them) and in
// `Config::default` (the library's, used by tests and embedders); this keeps them one fact.
#[test]
fn serve_without_options_is_config_default() {
    let cli = Cli::parse_from(["transit-broadcaster", "serve"]);
    let Command::Serve(args) = cli.command else {
        panic!("not serve");
    };
    let got = args.config();
    let want = Config::default();
    assert_eq!(got.grpc_addr, want.grpc_addr);
    assert_eq!(got.http_addr, want.http_addr);
    assert_eq!(got.admin_addr, want.admin_addr);
    assert_eq!(got.source, want.source);
    assert_eq!(got.source_options, want.source_options);
    assert_eq!(got.streams, want.streams);
    assert_eq!(got.channel_capacity, want.channel_capacity);
    assert_eq!(got.subscriber_queue, want.subscriber_queue);
    assert_eq!(got.report_url, want.report_url);
    assert_eq!(got.report_interval, want.report_interval);
    assert_eq!(got.fault, want.fault);
    assert_eq!(got.stuck_after, want.stuck_after);
    assert_eq!(got.shutdown_grace, want.shutdown_grace);
    assert_eq!(got.grpc_server, want.grpc_server);
}

#[test]
fn an_empty_report_url_disables_reporting() {
    let cli = Cli::parse_from(["transit-broadcaster", "serve", "--report-url", " "]);
    let Command::Serve(args) = cli.command else {
        panic!("not serve");
    };
    assert_eq!(args.config().report_url, None);
}
