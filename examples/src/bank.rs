//! A bank: accounts with an overdraft limit, and transfers between accounts carried out by a
//! process application. Events are compressed and encrypted, accounts are snapshotted every
//! few events. The same `Bank` runs on SQLite and on Cassandra.
//!
//! A transfer is a process: the debit (`TransferSent`) is committed on the sender; the
//! transfers process follows the stored log and credits the receiver (`TransferReceived`),
//! or refunds the sender (`TransferReturned`) when the receiver is closed. Its events and
//! its tracking record commit together, so each transfer completes exactly once, whatever
//! crashes in between (tested with `kill -9`).

use std::collections::HashSet;
use std::sync::Arc;

use eventsmith::{
    AesGcmCipher, Aggregate, Application, BoxError, BoxFuture, CodecId, CommandError, Committed,
    DomainEvent, Encrypt, Envelope, Event, EventMapper, IdempotencyKey, ItemStore, Keyring,
    LoadError, PayloadCipher, Policy, Process, SnapshotState, SnapshotStore, StoredSnapshots,
    System, Unit, Zstd, catch_up,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An account was opened.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "bank.Opened")]
pub struct Opened {
    /// Who owns it.
    pub owner: String,
    /// How far below zero the balance may go.
    pub overdraft_limit: u64,
}

/// Money was paid in.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "bank.Deposited")]
pub struct Deposited {
    /// In cents.
    pub amount: u64,
}

/// Money was paid out.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "bank.Withdrawn")]
pub struct Withdrawn {
    /// In cents.
    pub amount: u64,
}

/// Money left for another account; the transfer policy credits it there.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "bank.TransferSent")]
pub struct TransferSent {
    /// Identifies the transfer on both sides.
    pub transfer_id: Uuid,
    /// The receiving account.
    pub to: Uuid,
    /// In cents.
    pub amount: u64,
}

/// Money arrived from another account.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "bank.TransferReceived")]
pub struct TransferReceived {
    /// Identifies the transfer on both sides.
    pub transfer_id: Uuid,
    /// The sending account.
    pub from: Uuid,
    /// In cents.
    pub amount: u64,
}

/// A transfer came back: the receiver could not take it (closed).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "bank.TransferReturned")]
pub struct TransferReturned {
    /// Identifies the transfer on both sides.
    pub transfer_id: Uuid,
    /// The account that refused it.
    pub to: Uuid,
    /// In cents.
    pub amount: u64,
}

/// The account was closed: it takes no more commands, and transfers to it come back.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Event)]
#[event(topic = "bank.Closed")]
pub struct Closed;

/// Everything that happens to an account.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
pub enum AccountEvent {
    /// The account was opened.
    Opened(Opened),
    /// Money was paid in.
    Deposited(Deposited),
    /// Money was paid out.
    Withdrawn(Withdrawn),
    /// A transfer left.
    TransferSent(TransferSent),
    /// A transfer arrived.
    TransferReceived(TransferReceived),
    /// A transfer came back.
    TransferReturned(TransferReturned),
    /// The account was closed.
    Closed(Closed),
}

/// An account's state.
#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Whether it was opened (commands on an account that was never opened fail).
    pub opened: bool,
    /// Whether it was closed.
    pub closed: bool,
    /// Who owns it.
    pub owner: String,
    /// In cents; negative within the overdraft limit.
    pub balance: i64,
    /// How far below zero the balance may go.
    pub overdraft_limit: u64,
    /// Transfers received (or returned).
    pub received: HashSet<Uuid>,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened(e) => {
                self.opened = true;
                self.owner = e.owner.clone();
                self.overdraft_limit = e.overdraft_limit;
            }
            AccountEvent::Deposited(e) => self.balance += e.amount as i64,
            AccountEvent::Withdrawn(e) => self.balance -= e.amount as i64,
            AccountEvent::TransferSent(e) => self.balance -= e.amount as i64,
            AccountEvent::TransferReceived(e) => {
                self.balance += e.amount as i64;
                self.received.insert(e.transfer_id);
            }
            AccountEvent::TransferReturned(e) => {
                self.balance += e.amount as i64;
                self.received.insert(e.transfer_id);
            }
            AccountEvent::Closed(_) => self.closed = true,
        }
    }
}

impl SnapshotState for Account {
    const SNAPSHOT_TOPIC: &'static str = "bank.AccountSnapshot";
}

/// Why the bank refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankError {
    /// Amounts are positive.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// The overdraft limit would be exceeded.
    #[error("insufficient funds: balance {balance}, limit {limit}, asked {asked}")]
    InsufficientFunds {
        /// The balance now.
        balance: i64,
        /// The overdraft limit.
        limit: u64,
        /// The amount asked for.
        asked: u64,
    },
    /// No such account.
    #[error("no account {0}")]
    NoAccount(Uuid),
    /// The account was opened before.
    #[error("account {0} is already open")]
    AlreadyOpen(Uuid),
    /// The account is closed.
    #[error("account {0} is closed")]
    Closed(Uuid),
    /// Storage failed.
    #[error("storage failed: {0}")]
    Storage(String),
}

impl Account {
    /// Decides to open the account, once.
    pub fn open(
        &self,
        id: Uuid,
        owner: &str,
        overdraft_limit: u64,
    ) -> Result<[AccountEvent; 1], BankError> {
        if self.opened {
            return Err(BankError::AlreadyOpen(id));
        }
        Ok([Opened {
            owner: owner.to_owned(),
            overdraft_limit,
        }
        .into()])
    }

    fn check_debit(&self, amount: u64) -> Result<(), BankError> {
        if amount == 0 {
            return Err(BankError::ZeroAmount);
        }
        if self.balance - (amount as i64) < -(self.overdraft_limit as i64) {
            return Err(BankError::InsufficientFunds {
                balance: self.balance,
                limit: self.overdraft_limit,
                asked: amount,
            });
        }
        Ok(())
    }

    /// Decides a deposit.
    pub fn deposit(&self, amount: u64) -> Result<[AccountEvent; 1], BankError> {
        if amount == 0 {
            return Err(BankError::ZeroAmount);
        }
        Ok([Deposited { amount }.into()])
    }

    /// Decides a withdrawal, within the overdraft limit.
    pub fn withdraw(&self, amount: u64) -> Result<[AccountEvent; 1], BankError> {
        self.check_debit(amount)?;
        Ok([Withdrawn { amount }.into()])
    }

    /// Decides to send a transfer, within the overdraft limit.
    pub fn send(
        &self,
        transfer_id: Uuid,
        to: Uuid,
        amount: u64,
    ) -> Result<[AccountEvent; 1], BankError> {
        self.check_debit(amount)?;
        Ok([TransferSent {
            transfer_id,
            to,
            amount,
        }
        .into()])
    }

    /// Decides to refund a transfer that `to` could not take. Exactly once is the transfers
    /// process's guarantee (its events and tracking record commit together); `received`
    /// only records it.
    pub fn refund(&self, transfer_id: Uuid, to: Uuid, amount: u64) -> Option<AccountEvent> {
        Some(
            TransferReturned {
                transfer_id,
                to,
                amount,
            }
            .into(),
        )
    }

    /// Decides to credit a transfer. Exactly once is the transfers process's guarantee (its
    /// events and tracking record commit together, tested under `kill -9` with this decision
    /// deliberately not deduplicating); `received` only records it.
    pub fn receive(
        &self,
        transfer_id: Uuid,
        from: Uuid,
        amount: u64,
    ) -> Result<Option<AccountEvent>, BankError> {
        Ok(Some(
            TransferReceived {
                transfer_id,
                from,
                amount,
            }
            .into(),
        ))
    }
}

fn storage(e: impl std::fmt::Display) -> BankError {
    BankError::Storage(e.to_string())
}

/// The bank's error for a failed command on account `id`.
fn refused(e: CommandError<BankError>) -> BankError {
    match e {
        CommandError::Rejected(e) => e,
        CommandError::NotFound { id } => BankError::NoAccount(id),
        e => storage(e),
    }
}

/// The bank application: accounts snapshotted every 5 events, and the transfers process that
/// completes transfers. Cheap to clone; share one across tasks and requests.
pub struct Bank<S: ItemStore> {
    accounts: Application<Account, S>,
    store: S,
    cipher: Arc<dyn PayloadCipher>,
    system: System<S>,
}

impl<S: ItemStore> Clone for Bank<S> {
    fn clone(&self) -> Self {
        Bank {
            accounts: self.accounts.clone(),
            store: self.store.clone(),
            cipher: self.cipher.clone(),
            system: self.system.clone(),
        }
    }
}

impl<S: ItemStore + std::fmt::Debug> std::fmt::Debug for Bank<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bank")
            .field("accounts", &self.accounts)
            .finish()
    }
}

/// The name of the transfers process: the key of its tracking record.
pub const TRANSFERS: &str = "bank.transfers";

/// The policy of the transfers process: a sent transfer is credited to the receiver, or
/// refunded to the sender when the receiver is closed.
struct Transfers;

impl<S: ItemStore> Policy<AccountEvent, Account, S> for Transfers {
    fn react<'a>(
        &'a self,
        event: &'a Envelope<AccountEvent>,
        unit: &'a mut Unit<Account, S>,
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let AccountEvent::TransferSent(t) = &event.event else {
                return Ok(());
            };
            let from = event.originator_id;
            let receiver = unit.get(t.to).await?.state();
            if receiver.opened && !receiver.closed {
                unit.execute(t.to, |a| a.receive(t.transfer_id, from, t.amount))
                    .await?;
            } else {
                unit.execute(from, |a| {
                    Ok::<_, BankError>(a.refund(t.transfer_id, t.to, t.amount))
                })
                .await?;
            }
            Ok(())
        })
    }
}

fn mapper(cipher: Arc<dyn PayloadCipher>) -> EventMapper<AccountEvent> {
    EventMapper::<AccountEvent>::builder()
        .codec(CodecId::Postcard)
        .compressor(Arc::new(Zstd::new()))
        .cipher(cipher, Encrypt::All)
        .build()
        .expect("the account events have distinct topics")
}

/// The transfers process: follows the accounts' sent transfers, credits or refunds.
fn transfers<S: ItemStore>(
    accounts: &Application<Account, S>,
    cipher: &Arc<dyn PayloadCipher>,
) -> Process<AccountEvent, Account, S> {
    Process::new(
        TRANSFERS,
        mapper(cipher.clone()),
        accounts.clone(),
        Transfers,
    )
    .topics(&[TransferSent::TOPIC])
}

impl<S: ItemStore + SnapshotStore> Bank<S> {
    /// A bank on `store`, encrypting every event and snapshot with `cipher`. Transfers are
    /// completed by the bank's [`system`](Self::system), which something must run (or
    /// [`settle`](Self::settle)).
    pub fn new(store: S, cipher: Arc<dyn PayloadCipher>) -> Self {
        let mapper = mapper(cipher.clone());
        let snapshots =
            StoredSnapshots::<Account, _>::new(store.clone(), mapper.payloads().clone()).every(5);
        let system = System::new(store.clone());
        // Commits made here wake the bank's runners at once.
        let accounts = Application::builder(store.clone(), mapper)
            .snapshots(snapshots)
            .publish_to(system.waker())
            .build();
        let system = system
            .follow(transfers(&accounts, &cipher))
            .expect("the bank's followers have distinct names");
        Bank {
            accounts,
            store,
            cipher,
            system,
        }
    }

    /// The transfers process application.
    pub fn transfers(&self) -> Process<AccountEvent, Account, S> {
        transfers(&self.accounts, &self.cipher)
    }

    /// The bank's followers (its transfers process), woken by this bank's commits: run them
    /// with `.runner().start()`. Any number of processes may run the system on the same
    /// store: one runs the transfers at a time (the others stand by to take over), and each
    /// transfer completes once.
    pub fn system(&self) -> System<S> {
        self.system.clone()
    }

    /// Completes every transfer sent so far, in this task; returns how many notifications
    /// the process read.
    pub async fn settle(&self) -> Result<u64, BankError> {
        catch_up(&self.store, &self.transfers(), 256)
            .await
            .map_err(storage)
    }

    /// A bank with a fresh random key (for examples and tests; real keys come from a key store).
    pub fn with_new_key(store: S) -> Self {
        Self::new(
            store,
            Arc::new(AesGcmCipher::new(Keyring::new(
                "bank-1",
                eventsmith::Key::generate(),
            ))),
        )
    }

    /// The accounts application.
    pub fn accounts(&self) -> &Application<Account, S> {
        &self.accounts
    }

    /// Opens an account.
    pub async fn open(&self, owner: &str, overdraft_limit: u64) -> Result<Uuid, BankError> {
        let id = Uuid::new_v4();
        self.accounts
            .command(id, |a| a.open(id, owner, overdraft_limit))
            .await
            .map_err(refused)?;
        Ok(id)
    }

    /// Pays money in. With a `request` key, the same request sent again pays in once.
    pub async fn deposit(
        &self,
        id: Uuid,
        amount: u64,
        request: Option<IdempotencyKey>,
    ) -> Result<(), BankError> {
        self.run(id, request, |a| a.deposit(amount)).await.map(drop)
    }

    /// Pays money out, within the overdraft limit. With a `request` key, the same request
    /// sent again (a client's retry after a lost response) pays out once.
    pub async fn withdraw(
        &self,
        id: Uuid,
        amount: u64,
        request: Option<IdempotencyKey>,
    ) -> Result<(), BankError> {
        self.run(id, request, |a| a.withdraw(amount))
            .await
            .map(drop)
    }

    /// Closes an account: later commands on it fail, and transfers to it come back.
    pub async fn close(&self, id: Uuid) -> Result<(), BankError> {
        self.run(id, None, |_| Ok([AccountEvent::from(Closed)]))
            .await
            .map(drop)
    }

    /// Moves money: debits `from` now; the transfers process credits `to` (or refunds `from`
    /// if `to` is closed by then). With a `request`
    /// key, the same request sent again moves the money once (and returns the same id).
    pub async fn transfer(
        &self,
        from: Uuid,
        to: Uuid,
        amount: u64,
        request: Option<IdempotencyKey>,
    ) -> Result<Uuid, BankError> {
        if !self.accounts.get(to).await.is_ok_and(|r| r.state().opened) {
            return Err(BankError::NoAccount(to));
        }
        let new_id = Uuid::new_v4();
        let done = self
            .run(from, request, |a| a.send(new_id, to, amount))
            .await?;
        // A replayed request returns the first run's transfer id.
        match done.events.first().map(|e| &e.event) {
            Some(AccountEvent::TransferSent(t)) => Ok(t.transfer_id),
            _ => Err(BankError::Storage(format!(
                "request on {from} was not a transfer"
            ))),
        }
    }

    /// The balance of an account.
    pub async fn balance(&self, id: Uuid) -> Result<i64, BankError> {
        match self.accounts.get(id).await {
            Ok(root) if root.state().opened => Ok(root.state().balance),
            Ok(_) | Err(LoadError::NotFound { .. }) => Err(BankError::NoAccount(id)),
            Err(e) => Err(storage(e)),
        }
    }

    /// Runs a command on an opened account.
    async fn run<I>(
        &self,
        id: Uuid,
        request: Option<IdempotencyKey>,
        decide: impl Fn(&Account) -> Result<I, BankError> + Send + Sync,
    ) -> Result<Committed<Account>, BankError>
    where
        I: IntoIterator,
        I::Item: Into<AccountEvent>,
    {
        let opened = |a: &Account| {
            if !a.opened {
                Err(BankError::NoAccount(id))
            } else if a.closed {
                Err(BankError::Closed(id))
            } else {
                decide(a)
            }
        };
        let command = self.accounts.command(id, opened).require_existing();
        match request {
            Some(key) => command.idempotency_key(key).await,
            None => command.await,
        }
        .map_err(refused)
    }
}
