//! Paying through the sandbox gateway mounted on the test server: open a payment, check it
//! out at the sandbox (the widget step), confirm it; read and set the sandbox's ledger and
//! faults with its admin key (`pg_sandbox.admin_key` of config/test.toml).

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{read, Api};

pub const SANDBOX_KEY: &str = "test-sandbox-key";

impl Api {
    /// Opens a payment of order `order_id` (at `provider`, or where the server picks) and
    /// checks it out at the sandbox; answers the payment and its payment key.
    pub async fn checkout(
        &self,
        buyer: &str,
        order_id: i64,
        provider: Option<&str>,
    ) -> (Value, String) {
        let body = match provider {
            Some(provider) => json!({"provider": provider}),
            None => json!({}),
        };
        let (status, payment) = self
            .post(
                &format!("/api/v1/orders/{order_id}/payments"),
                Some(buyer),
                body,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{payment}");
        assert_eq!(payment["status"], "ready");
        let (status, checkout) = self
            .post(
                "/pg-sandbox/checkout",
                None,
                json!({"provider": payment["provider"], "pg_order_id": payment["pg_order_id"],
                       "amount": payment["amount"]}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{checkout}");
        let key = checkout["payment_key"].as_str().unwrap().to_owned();
        (payment, key)
    }

    /// Confirms `payment` with `key` for `amount`.
    pub async fn confirm(
        &self,
        buyer: &str,
        payment: &Value,
        key: &str,
        amount: i64,
    ) -> (StatusCode, Value) {
        self.post(
            "/api/v1/payments/confirm",
            Some(buyer),
            json!({"payment_key": key, "pg_order_id": payment["pg_order_id"], "amount": amount}),
        )
        .await
    }

    /// Opens, checks out and confirms a payment of the whole of order `order`.
    pub async fn pay(&self, buyer: &str, order: &Value, provider: Option<&str>) -> Value {
        let (payment, key) = self
            .checkout(buyer, order["id"].as_i64().unwrap(), provider)
            .await;
        let amount = payment["amount"].as_i64().unwrap();
        let (status, paid) = self.confirm(buyer, &payment, &key, amount).await;
        assert_eq!(
            (status, &paid["status"]),
            (StatusCode::OK, &json!("paid")),
            "{paid}"
        );
        paid
    }

    /// The sandbox's ledger.
    pub async fn charges(&self) -> Vec<Value> {
        let response = self
            .client
            .get(self.url("/pg-sandbox/charges"))
            .header("X-Sandbox-Key", SANDBOX_KEY)
            .send()
            .await
            .unwrap();
        let (status, body) = read(response).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["charges"].as_array().unwrap().clone()
    }

    /// Sets one gateway's faults at the sandbox.
    pub async fn set_faults(&self, faults: Value) -> (StatusCode, Value) {
        let response = self
            .client
            .put(self.url("/pg-sandbox/faults"))
            .header("X-Sandbox-Key", SANDBOX_KEY)
            .json(&faults)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    /// Charges a checked-out payment at the sandbox directly, as the gateway would when a
    /// confirm reached it but its answer never came back.
    pub async fn charge_at_sandbox(&self, payment: &Value, key: &str) {
        let response = self
            .client
            .post(self.url("/pg-sandbox/toss/v1/payments/confirm"))
            .basic_auth("", Some("test_sk_sandbox"))
            .json(
                &json!({"paymentKey": key, "orderId": payment["pg_order_id"],
                          "amount": payment["amount"]}),
            )
            .send()
            .await
            .unwrap();
        let (status, body) = read(response).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("DONE")),
            "{body}"
        );
    }
}
