//! Outgoing mail. A [`Mailer`] has two real backends: [`SmtpMailer`] (lettre, for production:
//! `smtps://`, or `smtp://...?tls=required` for STARTTLS) and [`FileMailer`] (the embedded
//! default: every message is written as an `.eml` file under `mail.dir`, `./data/mail`, and
//! its path is logged, so a newcomer can read a verification code without a mail server).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chrono::Utc;
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::settings::MailSettings;

/// A plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address: {0}")]
    Address(String),
    #[error("cannot build the message: {0}")]
    Build(String),
    #[error("delivery failed: {0}")]
    Delivery(String),
    /// The mail server could not be reached or asked to try later (not a refusal of the mail).
    #[error("mail server unavailable: {0}")]
    Unavailable(String),
}

impl MailError {
    /// Whether sending the same mail later may well succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, MailError::Unavailable(_))
    }
}

#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

/// Builds the configured mailer.
pub fn from_settings(settings: &MailSettings) -> anyhow::Result<Arc<dyn Mailer>> {
    let from: Mailbox = settings
        .from
        .parse()
        .with_context(|| format!("mail.from {:?} is not an address", settings.from))?;
    match settings.backend.as_str() {
        "file" => Ok(Arc::new(FileMailer {
            dir: PathBuf::from(&settings.dir),
            from,
        })),
        "smtp" => Ok(Arc::new(SmtpMailer::new(&settings.smtp_url, from)?)),
        other => anyhow::bail!("mail.backend must be \"file\" or \"smtp\", not {other:?}"),
    }
}

fn message(from: &Mailbox, mail: &Mail) -> Result<Message, MailError> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|_| MailError::Address("recipient".into()))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&mail.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())
        .map_err(|err| MailError::Build(err.to_string()))
}

/// Writes each message to a file (the embedded default).
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let bytes = message(&self.from, mail)?.formatted();
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|err| MailError::Delivery(format!("{}: {err}", self.dir.display())))?;
        // The name carries no address: the folder listing shows no personal data.
        let name = format!(
            "{}-{}.eml",
            Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
            uuid::Uuid::new_v4().simple()
        );
        let path = self.dir.join(name);
        tokio::fs::write(&path, bytes)
            .await
            .map_err(|err| MailError::Delivery(format!("{}: {err}", path.display())))?;
        tracing::info!(path = %path.display(), subject = %mail.subject, "mail written to the mailbox folder");
        Ok(())
    }
}

/// Sends over SMTP.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    pub fn new(url: &str, from: Mailbox) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .context("mail.smtp_url is not a valid smtp:// or smtps:// url")?
            .timeout(Some(Duration::from_secs(10)))
            .build();
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = message(&self.from, mail)?;
        self.transport.send(message).await.map(drop).map_err(|err| {
            if err.is_permanent() {
                MailError::Delivery(err.to_string())
            } else {
                MailError::Unavailable(err.to_string())
            }
        })
    }
}
