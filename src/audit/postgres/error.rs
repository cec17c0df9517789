//! PostgreSQL errors as people read them: the server's message, SQLSTATE, detail and hint.

/// What went wrong, in PostgreSQL's words when the server answered: `permission denied for
/// table t (SQLSTATE 42501)`, then its detail and hint when it gave them. Errors the server
/// did not send (connecting, I/O) name their cause.
pub(crate) fn pg_error(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(d) = db.detail() {
            s.push_str("; detail: ");
            s.push_str(d);
        }
        if let Some(h) = db.hint() {
            s.push_str("; hint: ");
            s.push_str(h);
        }
        return s;
    }
    let mut s = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_without_a_server_answer_name_their_cause() {
        let e = match "host=/nonexistent port=1 connect_timeout=x".parse::<tokio_postgres::Config>()
        {
            Err(e) => e,
            Ok(_) => return,
        };
        let s = pg_error(&e);
        assert!(s.starts_with("invalid connection string"), "{s}");
        assert!(s.len() > "invalid connection string".len(), "{s}");
    }
}
