//! `hurry-loadtest drop`: provision, load, wait for quiet, audit, report.
//!
//! - [`args`]: the flags (the drop, the load, what to measure);
//! - here: the run in its phases, each a function.

mod args;

use std::time::Duration;

use tokio::time::Instant;

pub use args::DropArgs;

use crate::audit::{self, AuditReport};
use crate::client::{http_client, Api, DropItem, Shopper};
use crate::conn::Pool;
use crate::cpu::{self, CpuPerSale, IdleRule, InstrumentUse, Parties, SaleWindow};
use crate::report::Report;
use crate::runner::{self, Load};
use crate::stats::{Outcome, Summary};

/// What the run set up before the load.
struct Prepared {
    /// One API per target; the first one provisions and audits.
    apis: Vec<Api>,
    admin: String,
    /// Names the drop and the idempotency keys of this run.
    run_id: String,
    item: DropItem,
    shoppers: Vec<Shopper>,
}

/// What the load produced.
struct Loaded {
    started_at: String,
    outcomes: Vec<Outcome>,
    instrument: Option<InstrumentUse>,
    /// The server's and its stores' CPU from the first send until idle again.
    sale: Option<SaleWindow>,
}

/// Runs one drop; the report says whether the audit passed.
pub async fn run(args: &DropArgs) -> anyhow::Result<Report> {
    args.check()?;
    let prepared = prepare(args).await?;
    let loaded = load(args, &prepared).await?;
    let user_ids: Vec<i64> = prepared.shoppers.iter().map(|s| s.user_id).collect();
    let (api, item) = (&prepared.apis[0], prepared.item);
    let (mut audit, strategy) = audit_when_quiet(
        api,
        &prepared.admin,
        item.id,
        &loaded.outcomes,
        &user_ids,
        false,
    )
    .await?;
    // Units sold as the store counts them, not as the answers did (before any payment fails).
    let cpu_per_sale = loaded.sale.map(|sale| CpuPerSale::of(&sale, audit.sold));
    let payments = if args.pay {
        let report = pay(args, &prepared, &loaded.outcomes).await?;
        // Failed payments gave their units back: the drop is audited again (I3 with them).
        // Payments in doubt may still be settling (their units coming back) right after the
        // money audit: I3 is read again for a while before it counts.
        let (after, _) = audit_when_quiet(
            api,
            &prepared.admin,
            item.id,
            &loaded.outcomes,
            &user_ids,
            true,
        )
        .await?;
        audit = after;
        audit.violations.extend(report.violations.iter().cloned());
        Some(report)
    } else {
        None
    };
    let requests = loaded.outcomes.iter().filter(|o| !o.retry).count();
    Ok(Report {
        started_at: loaded.started_at,
        config: args.run_config(strategy, item.id, prepared.shoppers.len(), requests),
        summary: Summary::of(&loaded.outcomes),
        instrument: loaded.instrument,
        cpu_per_sale,
        payments,
        audit,
    })
}

/// `--pay`: every order the drop created, paid by its shopper through the sandbox.
async fn pay(
    args: &DropArgs,
    prepared: &Prepared,
    outcomes: &[Outcome],
) -> anyhow::Result<crate::pay::PayReport> {
    let mut orders: Vec<(String, i64)> = outcomes
        .iter()
        .filter(|outcome| outcome.status == 201)
        .filter_map(|outcome| {
            let token = &prepared.shoppers[outcome.shopper].access_token;
            outcome.order_id.map(|id| (token.clone(), id))
        })
        .collect();
    // A retried request answers its first order again.
    orders.sort_by_key(|(_, id)| *id);
    orders.dedup_by_key(|(_, id)| *id);
    let (api, admin, item_id) = (&prepared.apis[0], &prepared.admin, prepared.item.id);
    let plan = args.pay_plan()?;
    if !args.quiet {
        eprintln!("paying {} orders through {}", orders.len(), plan.sandbox);
    }
    crate::pay::pay_and_audit(api, admin, &plan, &orders, async || {
        api.drop_view(admin, item_id).await
    })
    .await
}

/// Logs the admin in, creates the drop, provisions the shoppers and waits for their events.
async fn prepare(args: &DropArgs) -> anyhow::Result<Prepared> {
    let client = http_client(args.connections)?;
    let apis: Vec<Api> = args
        .target
        .iter()
        .map(|base| Api::new(client.clone(), base))
        .collect();
    let api = &apis[0];
    let admin = api
        .admin_token(&args.admin_email, &args.admin_password)
        .await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let item = api
        .create_drop(
            &admin,
            &format!("loadtest {run_id}"),
            args.units,
            args.per_user_limit,
            args.duration() + Duration::from_secs(600),
        )
        .await?;
    let provisioning = std::time::Instant::now();
    let shoppers = api.provision(&admin, args.shoppers).await?;
    if !args.quiet {
        eprintln!(
            "drop {}: {} units; {} shoppers provisioned in {:.1?}",
            item.id,
            item.units,
            shoppers.len(),
            provisioning.elapsed()
        );
    }
    settle(api, &admin, item.id, args).await?;
    Ok(Prepared {
        apis,
        admin,
        run_id,
        item,
        shoppers,
    })
}

/// Sends the load; the CPU windows open at its start: the harness's closes with the load, the
/// server's and its stores' once they are idle again.
async fn load(args: &DropArgs, prepared: &Prepared) -> anyhow::Result<Loaded> {
    let targets = prepared
        .apis
        .iter()
        .map(|api| {
            let path = format!("/api/v1/items/{}/purchase", prepared.item.id);
            Ok((Pool::new(&api.base)?, path))
        })
        .collect::<anyhow::Result<_>>()?;
    let load = Load {
        targets,
        tokens: prepared
            .shoppers
            .iter()
            .map(|s| format!("Bearer {}", s.access_token))
            .collect(),
        quantity: args.quantity,
        run: prepared.run_id.clone(),
        keys: args.keys,
        connections: args.connections,
        show_progress: !args.quiet,
    };
    let workload = args.workload(prepared.shoppers.len());
    let parties = Parties::new(args.server_pid);
    quiet_before_the_sale(args, &parties).await?;
    let started_at = chrono::Utc::now().to_rfc3339();
    let sale_start = parties.sample().map(|ticks| (ticks, Instant::now()));
    let before = cpu::snapshot();
    let outcomes = runner::run(load, workload).await;
    let instrument = before
        .zip(cpu::snapshot())
        .map(|(before, after)| cpu::between(&before, &after));
    let sale = match sale_start {
        Some(start) => sale_window(args, &parties, start).await,
        None => None,
    };
    Ok(Loaded {
        started_at,
        outcomes,
        instrument,
        sale,
    })
}

/// Checkpoints the server's database (when given) and waits (at most `--idle-max-secs`) until
/// the server and its stores are idle, so the CPU-per-sale window holds the sale's work only.
async fn quiet_before_the_sale(args: &DropArgs, parties: &Parties) -> anyhow::Result<()> {
    if let Some(url) = &args.checkpoint_url {
        use anyhow::Context as _;
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .with_context(|| "cannot connect to checkpoint the server's database")?;
        sqlx::query("CHECKPOINT")
            .execute(&mut conn)
            .await
            .with_context(|| "CHECKPOINT before the sale")?;
        conn.close().await?;
    }
    let rule = IdleRule::capped(Duration::from_secs_f64(args.idle_max_secs));
    let _ = cpu::until_idle(&rule, || parties.sample()).await;
    Ok(())
}

/// Waits (at most `--idle-max-secs`) until the parties are idle again; their CPU since
/// `start`.
async fn sale_window(
    args: &DropArgs,
    parties: &Parties,
    (ticks, started): (cpu::Ticks, Instant),
) -> Option<SaleWindow> {
    let rule = IdleRule::capped(Duration::from_secs_f64(args.idle_max_secs));
    let waiting = Instant::now();
    let settled = cpu::until_idle(&rule, || parties.sample()).await?;
    if !args.quiet {
        let verdict = if settled.idle_reached {
            "idle"
        } else {
            "still busy"
        };
        eprintln!(
            "server and stores {verdict} {:.1?} after the load",
            settled.at - waiting
        );
    }
    Some(SaleWindow::until(&ticks, started, &settled))
}

/// Audits once every attempt has its answer. An attempt that got no answer (or a 5xx) may still
/// be settling on the server (and so may payments, `settling`), so a failing I3 is read again
/// for a few seconds before it counts.
async fn audit_when_quiet(
    api: &Api,
    admin: &str,
    item_id: i64,
    outcomes: &[Outcome],
    user_ids: &[i64],
    settling: bool,
) -> anyhow::Result<(AuditReport, Option<String>)> {
    let unsettled = settling || outcomes.iter().any(|o| o.status == 0 || o.status >= 500);
    let mut tries = if unsettled { 20 } else { 1 };
    loop {
        let view = api.drop_view(admin, item_id).await?;
        let report = audit::audit(outcomes, user_ids, &view, true);
        tries -= 1;
        let only_i3 = report.violations.iter().all(|v| v.invariant == "I3");
        if report.passed() || !only_i3 || tries == 0 {
            return Ok((report, Some(view.strategy)));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (at most `--settle-secs`) until the server has published every pending event, so the
/// signup events of the shoppers just provisioned are not relayed during the drop, as they
/// would not be in a real one.
async fn settle(api: &Api, admin: &str, item_id: i64, args: &DropArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let deadline = started + Duration::from_secs_f64(args.settle_secs.max(0.0));
    loop {
        let view = api.drop_view(admin, item_id).await?;
        let backlog = view.outbox_backlog.unwrap_or(0);
        if backlog == 0 {
            if !args.quiet && started.elapsed() > Duration::from_millis(500) {
                eprintln!("events published in {:.1?}", started.elapsed());
            }
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            if !args.quiet {
                eprintln!("starting with {backlog} events not yet published");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
