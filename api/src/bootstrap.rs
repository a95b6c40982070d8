//! The bootstrap admin (`admin.email`, `admin.password`): created at start when absent.
//!
//! An account that already holds the address is made admin only if its password is the
//! configured one: otherwise whoever signed up first with that address (email verification
//! off, or a verified mailbox of someone else's) would be handed the admin role. A mismatch
//! stops the start with a message saying what to change; an account that is admin already is
//! left as it is (its password may have been changed since).

use anyhow::{bail, Context};
use hurry_persistence::{NewUser, SealedColumn, StoreError, UserRecord};
use secrecy::ExposeSecret;

use crate::routes::auth::normalise_email;
use crate::state::AppState;

/// The roles the bootstrap admin holds.
const ROLES: [&str; 2] = ["admin", "seller"];

/// Creates the configured admin, or promotes the account that holds its address when that
/// account's password is the configured one; refuses otherwise.
pub async fn bootstrap_admin(state: &AppState) -> anyhow::Result<()> {
    let admin = &state.settings.admin;
    let password = admin.password.expose_secret();
    if admin.email.is_empty() || password.is_empty() {
        return Ok(());
    }
    let Some(email) = normalise_email(&admin.email) else {
        bail!("admin.email ({:?}) is not an email address", admin.email);
    };
    let email_index = state.pii.email_index(&email);
    if let Some(existing) = state.store.user_by_email_index(&email_index).await? {
        return promote(state, &existing, &email, password).await;
    }
    let password_hash = state
        .passwords
        .hash(password.to_owned())
        .await
        .context("cannot hash the admin password")?;
    let id = state.store.allocate_ids("users", 1).await?;
    let user = NewUser {
        id,
        email: state.pii.seal(&email, SealedColumn::UserEmail, id),
        email_index: email_index.clone(),
        password_hash,
        name: state.pii.seal("admin", SealedColumn::UserName, id),
        phone: None,
        address: None,
        email_verified: true,
        extra_roles: ROLES.map(str::to_owned).to_vec(),
        verification: None,
    };
    match state.store.create_user(&user).await {
        Ok(_) => Ok(()),
        // Another node created it meanwhile (or someone signed up): judge that account.
        Err(StoreError::Conflict { .. }) => {
            let existing = state
                .store
                .user_by_email_index(&email_index)
                .await?
                .context("the admin account vanished while it was being created")?;
            promote(state, &existing, &email, password).await
        }
        Err(err) => Err(err.into()),
    }
}

/// Gives `existing` the admin roles if it is admin already or its password is `password`.
async fn promote(
    state: &AppState,
    existing: &UserRecord,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    if existing.roles.iter().any(|role| role == "admin") {
        return Ok(());
    }
    let matches = state
        .passwords
        .verify(password.to_owned(), Some(existing.password_hash.clone()))
        .await
        .context("cannot check the admin password")?;
    if !matches {
        bail!(
            "an account with the admin address {email} exists and its password is not \
             admin.password: it is not made admin. Set admin.email to an address of your own, \
             or admin.password to that account's password"
        );
    }
    state
        .store
        .grant_roles(existing.id, &ROLES.map(str::to_owned))
        .await?;
    Ok(())
}
