//! Integration tests: the real server on a random port against a fresh database, on SQLite and
//! on PostgreSQL, driven through the JSON API; CLI tests run the real `holdfast` binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod alerts;
mod audit;
mod audit_seal;
mod auth;
mod backup;
mod backup_server;
mod browser;
mod browser_incident;
mod browser_security;
mod browser_signin;
mod cli;
mod containment;
mod corruption;
mod disk;
mod doctor;
mod dry_run;
mod encryption;
mod golden;
mod guards;
mod hostile;
mod incident;
mod pages;
mod records;
mod revert;
mod schema_fuzz;
mod security;
mod signin;
mod tls;
mod upgrade;
mod write_path;
