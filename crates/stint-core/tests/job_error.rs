//! `?` in `Job::perform` on the error types jobs meet: any
//! `std::error::Error`, `anyhow::Error`, `Box<dyn Error + Send + Sync>`,
//! `String` and `&str`. A compile test first: this file builds only if each
//! converts; then what each keeps of its message and causes.

use serde::{Deserialize, Serialize};
use stint_core::{Ctx, Job, JobError};

fn io() -> Result<(), std::io::Error> {
    Err(std::io::Error::other("disk full"))
}

fn anyhow_chain() -> anyhow::Result<()> {
    use anyhow::Context as _;
    io().context("cannot write page 3")
}

fn boxed() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    Err("boxed failure".into())
}

fn string() -> Result<(), String> {
    Err(format!("row {} is malformed", 7))
}

fn str_slice() -> Result<(), &'static str> {
    Err("no such file")
}

/// Which error `perform` meets.
#[derive(Serialize, Deserialize)]
struct Fails {
    with: String,
}

impl Job for Fails {
    const KIND: &'static str = "Fails";

    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        match self.with.as_str() {
            "io" => io()?,
            "anyhow" => anyhow_chain()?,
            "boxed" => boxed()?,
            "string" => string()?,
            "str" => str_slice()?,
            _ => {}
        }
        Ok(())
    }
}

/// As `perform` does, without a `Ctx`.
fn convert(with: &str) -> Result<(), JobError> {
    match with {
        "io" => io()?,
        "anyhow" => anyhow_chain()?,
        "boxed" => boxed()?,
        "string" => string()?,
        "str" => str_slice()?,
        _ => {}
    }
    Ok(())
}

fn failed(with: &str) -> (String, Vec<String>) {
    match convert(with) {
        Err(e @ JobError::Failed(_)) => e.message_and_chain(),
        Err(other) => panic!("{with}: not a failure: {other}"),
        Ok(()) => panic!("{with}: no error"),
    }
}

#[test]
fn question_mark_converts_each_error_type_into_a_failure() {
    assert_eq!(failed("io"), ("disk full".into(), vec![]));
    assert_eq!(
        failed("anyhow"),
        ("cannot write page 3".into(), vec!["disk full".into()]),
        "anyhow's context chain is kept"
    );
    assert_eq!(failed("boxed"), ("boxed failure".into(), vec![]));
    assert_eq!(failed("string"), ("row 7 is malformed".into(), vec![]));
    assert_eq!(failed("str"), ("no such file".into(), vec![]));
    assert!(convert("none").is_ok());
    // `perform` itself compiles with each of them.
    let _ = Fails { with: "io".into() };
}
