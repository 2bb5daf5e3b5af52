//! The private PostgreSQL server: starts, keeps its data across a restart,
//! and is gone when dropped.

use stint_testkit::postgres::PgServer;

#[test]
fn private_server_restarts_on_its_data_and_stops_on_drop() {
    let pg = PgServer::start().expect("start a private PostgreSQL");
    let port = pg.port();
    assert_ne!(port, 5432, "never the machine's shared server");
    assert!(pg.url().contains(&format!("127.0.0.1:{port}/stint")));
    pg.psql(
        "stint",
        "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)",
    )
    .expect("write");

    pg.stop().expect("stop");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a stopped server does not listen"
    );
    pg.start_again().expect("start again");
    assert_eq!(pg.psql("stint", "SELECT n FROM kept").expect("read"), "42");

    let url = pg.fresh_database().expect("fresh database");
    let db = url.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .unwrap(),
        "0"
    );

    drop(pg);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a dropped server is stopped"
    );
}
