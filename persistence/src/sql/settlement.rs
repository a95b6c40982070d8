//! Seller settlement: entries recorded with their event's inbox row, days closed per seller.

use super::super::*;
use crate::store::SettlementStore;

#[async_trait]
impl SettlementStore for SqlStore {
    async fn record_settlement(
        &self,
        consumer: &str,
        events: &[(uuid::Uuid, Vec<SettlementEntry>)],
    ) -> Result<usize, StoreError> {
        let now = now_micros();
        let mut tx = self.begin_guarded().await?;
        let mut num_fresh = 0;
        for (event_id, entries) in events {
            let fresh = sqlx::query(
                "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(consumer)
            .bind(uuid_param(*event_id))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            if !fresh {
                continue;
            }
            num_fresh += 1;
            for entry in entries {
                let seller: Option<i64> =
                    sqlx::query_scalar("SELECT seller_id FROM items WHERE id = $1")
                        .bind(entry.item_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(seller_id) = seller else {
                    return Err(StoreError::Invalid(format!(
                        "settlement entry for unknown item {}",
                        entry.item_id
                    )));
                };
                let last_closed: Option<String> =
                    sqlx::query_scalar("SELECT MAX(day) FROM settlements WHERE seller_id = $1")
                        .bind(seller_id)
                        .fetch_one(&mut *tx)
                        .await?;
                let day = open_day(entry.day, last_closed.as_deref());
                sqlx::query(
                    "INSERT INTO settlement_entries (event_id, order_id, item_id, seller_id, \
                         provider, kind, gross, fee, day, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(uuid_param(*event_id))
                .bind(entry.order_id)
                .bind(entry.item_id)
                .bind(seller_id)
                .bind(&entry.provider)
                .bind(entry.kind)
                .bind(entry.gross)
                .bind(entry.fee)
                .bind(day.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(num_fresh)
    }

    async fn close_settlements(&self, through: chrono::NaiveDate) -> Result<usize, StoreError> {
        let closed = sqlx::query(
            "INSERT INTO settlements (seller_id, day, gross, fee, net, num_entries, settled_at) \
             SELECT e.seller_id, e.day, CAST(SUM(e.gross) AS BIGINT), CAST(SUM(e.fee) AS BIGINT), \
                    CAST(SUM(e.gross) - SUM(e.fee) AS BIGINT), COUNT(*), $2 \
             FROM settlement_entries e \
             WHERE e.day <= $1 AND NOT EXISTS ( \
                 SELECT 1 FROM settlements s WHERE s.seller_id = e.seller_id AND s.day = e.day) \
             GROUP BY e.seller_id, e.day",
        )
        .bind(through.to_string())
        .bind(now_micros())
        .execute(self.writes())
        .await?
        .rows_affected();
        Ok(usize::try_from(closed).unwrap_or(usize::MAX))
    }

    async fn settlements(
        &self,
        seller_id: i64,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Result<Vec<SettlementDay>, StoreError> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT e.day, CAST(SUM(e.gross) AS BIGINT), CAST(SUM(e.fee) AS BIGINT), \
                    CAST(MAX(CASE WHEN s.day IS NULL THEN 0 ELSE 1 END) AS BIGINT) \
             FROM settlement_entries e \
             LEFT JOIN settlements s ON s.seller_id = e.seller_id AND s.day = e.day \
             WHERE e.seller_id = $1 AND e.day >= $2 AND e.day <= $3 \
             GROUP BY e.day ORDER BY e.day",
        )
        .bind(seller_id)
        .bind(from.to_string())
        .bind(to.to_string())
        .fetch_all(self.reads())
        .await?;
        rows.into_iter()
            .map(|(day, gross, fee, settled)| {
                let day = day
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("settlement day {day:?}")))?;
                Ok(SettlementDay {
                    day,
                    gross,
                    fee,
                    net: gross - fee,
                    settled: settled == 1,
                })
            })
            .collect()
    }
}

/// `day`, or the day after the seller's last settled day when `day` is settled already.
fn open_day(day: chrono::NaiveDate, last_closed: Option<&str>) -> chrono::NaiveDate {
    match last_closed.and_then(|last| last.parse::<chrono::NaiveDate>().ok()) {
        Some(last) if last >= day => last.succ_opt().unwrap_or(last),
        _ => day,
    }
}

#[cfg(test)]
mod tests {
    use super::open_day;

    #[test]
    fn an_entry_for_a_settled_day_goes_to_the_next_open_day() {
        let day = |text: &str| text.parse::<chrono::NaiveDate>().unwrap();
        assert_eq!(open_day(day("2026-12-03"), None), day("2026-12-03"));
        assert_eq!(
            open_day(day("2026-12-03"), Some("2026-12-02")),
            day("2026-12-03")
        );
        assert_eq!(
            open_day(day("2026-12-03"), Some("2026-12-03")),
            day("2026-12-04")
        );
        assert_eq!(
            open_day(day("2026-12-01"), Some("2026-12-05")),
            day("2026-12-06")
        );
    }
}
