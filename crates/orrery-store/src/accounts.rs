//! Accounts for the web app: passwords (stored as Argon2 hashes, made by the
//! server) and sign-in sessions (stored by the SHA-256 of their cookie
//! value), and the user list the admin area shows. API tokens are in
//! `lib.rs`; a session is not an API token and does not open the API.

use crate::{Millis, Result, Role, Store, StoreError, User, get, now_ms, user_row};

/// What migration 11 adds.
pub(crate) const MIGRATION: &str = r#"
ALTER TABLE users ADD COLUMN password_hash TEXT;
CREATE TABLE web_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
"#;

impl Store {
    /// Sets (or with `None` removes) a user's password hash.
    pub async fn set_password_hash(&self, user_id: &str, hash: Option<&str>) -> Result<()> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    /// A user and their password hash (if they have a password).
    pub async fn user_with_password(&self, login: &str) -> Result<Option<(User, Option<String>)>> {
        let row = sqlx::query(
            "SELECT id, login, name, role, created_at, password_hash FROM users WHERE login = $1",
        )
        .bind(login)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((user_row(&r)?, get(&r, "password_hash")?)))
            .transpose()
    }

    /// Every user, by login.
    pub async fn users(&self) -> Result<Vec<User>> {
        let rows =
            sqlx::query("SELECT id, login, name, role, created_at FROM users ORDER BY login")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(user_row).collect()
    }

    pub async fn set_role(&self, user_id: &str, role: Role) -> Result<()> {
        let done = sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    /// Opens a session until `expires_at`.
    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_at: Millis,
    ) -> Result<()> {
        sqlx::query("INSERT INTO web_sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user_id)
            .bind(now_ms())
            .bind(expires_at)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The user of a session that has not expired at `now`.
    pub async fn session_user(&self, token_hash: &str, now: Millis) -> Result<Option<User>> {
        let row = sqlx::query("SELECT u.id, u.login, u.name, u.role, u.created_at FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2")
            .bind(token_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| user_row(&r)).transpose()
    }

    /// Ends a session (and any that expired before `now`).
    pub async fn delete_session(&self, token_hash: &str, now: Millis) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE token_hash = $1 OR expires_at <= $2")
            .bind(token_hash)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Ends every session of a user (their role or password changed).
    pub async fn delete_sessions_of(&self, user_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM web_sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Replaces a project's settings (a JSON object as text: build rules
    /// and the like).
    pub async fn set_project_settings(&self, project_id: &str, settings: &str) -> Result<()> {
        let done = sqlx::query("UPDATE projects SET settings = $1 WHERE id = $2")
            .bind(settings)
            .bind(project_id)
            .execute(&self.writer)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("project {project_id}")));
        }
        Ok(())
    }

    /// How many users have the admin role.
    pub async fn count_admins(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users WHERE role = $1")
            .bind(Role::Admin.as_str())
            .fetch_one(&self.pool)
            .await?;
        get(&row, "n")
    }

    /// How many projects and pipelines there are (the admin area's health).
    pub async fn counts(&self) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM projects) AS projects, (SELECT COUNT(*) FROM pipelines) AS pipelines",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((get(&row, "projects")?, get(&row, "pipelines")?))
    }
}
