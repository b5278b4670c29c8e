//! A small HTTP service over the bank: one `Bank` shared by every request (the modern form of
//! the classic web-deployment guide: one application object per process, not per request).
//!
//! Deposits and withdrawals honour an `Idempotency-Key` request header: a client that lost
//! the response and sends the same request again with the same key gets the same answer, and
//! the money moves once.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventsmith::{IdempotencyKey, ItemStore, SnapshotStore};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::bank::{Bank, BankError};

/// `POST /accounts` body.
#[derive(Serialize, Deserialize, Debug)]
pub struct OpenAccount {
    /// Who owns it.
    pub owner: String,
    /// How far below zero it may go.
    #[serde(default)]
    pub overdraft_limit: u64,
}

/// `POST /accounts/{id}/deposits` and `/withdrawals` body.
#[derive(Serialize, Deserialize, Debug)]
pub struct Amount {
    /// In cents.
    pub amount: u64,
}

/// `GET /accounts/{id}` answer.
#[derive(Serialize, Deserialize, Debug)]
pub struct Balance {
    /// The account.
    pub id: Uuid,
    /// In cents.
    pub balance: i64,
}

fn status(e: BankError) -> (StatusCode, String) {
    let code = match e {
        BankError::NoAccount(_) => StatusCode::NOT_FOUND,
        BankError::AlreadyOpen(_) | BankError::Closed(_) => StatusCode::CONFLICT,
        BankError::ZeroAmount | BankError::InsufficientFunds { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        BankError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, e.to_string())
}

/// The header a client sends its request id in.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The request's idempotency key, if it sent one; a malformed one is a 400.
fn request_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, (StatusCode, String)> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bad = |why: String| (StatusCode::BAD_REQUEST, format!("{IDEMPOTENCY_KEY}: {why}"));
    let text = value.to_str().map_err(|e| bad(e.to_string()))?;
    text.parse()
        .map(Some)
        .map_err(|e: eventsmith::InvalidKey| bad(e.to_string()))
}

/// The routes, sharing `bank`.
pub fn router<S: ItemStore + SnapshotStore>(bank: Bank<S>) -> Router {
    Router::new()
        .route("/accounts", post(open::<S>))
        .route("/accounts/{id}", get(balance::<S>))
        .route("/accounts/{id}/deposits", post(deposit::<S>))
        .route("/accounts/{id}/withdrawals", post(withdraw::<S>))
        .with_state(bank)
}

async fn open<S: ItemStore + SnapshotStore>(
    State(bank): State<Bank<S>>,
    Json(body): Json<OpenAccount>,
) -> Result<(StatusCode, Json<Balance>), (StatusCode, String)> {
    let id = bank
        .open(&body.owner, body.overdraft_limit)
        .await
        .map_err(status)?;
    Ok((StatusCode::CREATED, Json(Balance { id, balance: 0 })))
}

async fn balance<S: ItemStore + SnapshotStore>(
    State(bank): State<Bank<S>>,
    Path(id): Path<Uuid>,
) -> Result<Json<Balance>, (StatusCode, String)> {
    Ok(Json(Balance {
        id,
        balance: bank.balance(id).await.map_err(status)?,
    }))
}

async fn deposit<S: ItemStore + SnapshotStore>(
    State(bank): State<Bank<S>>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<Amount>,
) -> Result<StatusCode, (StatusCode, String)> {
    let key = request_key(&headers)?;
    bank.deposit(id, body.amount, key).await.map_err(status)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn withdraw<S: ItemStore + SnapshotStore>(
    State(bank): State<Bank<S>>,
    Path(id): Path<Uuid>,
    headers: HeaderMap,
    Json(body): Json<Amount>,
) -> Result<StatusCode, (StatusCode, String)> {
    let key = request_key(&headers)?;
    bank.withdraw(id, body.amount, key).await.map_err(status)?;
    Ok(StatusCode::NO_CONTENT)
}
