//! The private redis-server: it answers, keeps its data across a kill and
//! restart (AOF), and is gone once dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use stint_testkit::redis::RedisServer;

/// Sends one command (inline form) and returns the raw reply.
fn call(port: u16, command: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).expect("reply");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn data_survives_kill_and_restart_and_drop_stops_it() {
    let server = RedisServer::start().expect("start redis-server");
    let port = server.port();
    assert_ne!(port, 6379, "never the machine's shared server");
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));
    assert_eq!(call(port, "SET stint:test kept"), "+OK\r\n");

    server.kill();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "killed: nothing listens"
    );
    server.restart().expect("restart on the same data");
    assert_eq!(
        call(port, "GET stint:test"),
        "$4\r\nkept\r\n",
        "the AOF brought it back"
    );
    assert!(server.dir().join("redis.log").exists());

    drop(server);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "dropped: the server is gone"
    );
}
