//! Reading Redis replies (as the Lua scripts shape them).

use std::collections::HashMap;

use redis::Value;

/// The elements of an array reply; nil is empty.
pub(crate) fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        Value::Nil => Vec::new(),
        other => vec![other],
    }
}

/// A reply as text; nil is empty.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Okay => "OK".into(),
        _ => String::new(),
    }
}

/// A reply as an integer (0 when it is none).
pub(crate) fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => text(other).trim().parse().unwrap_or(0),
    }
}

/// A reply as a float, when it is one (a sorted set score).
pub(crate) fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        other => text(other).trim().parse().ok(),
    }
}

/// Alternating field / value replies (HGETALL) as a map.
pub(crate) fn pairs(values: &[Value]) -> HashMap<String, String> {
    values
        .chunks_exact(2)
        .map(|kv| (text(&kv[0]), text(&kv[1])))
        .collect()
}
