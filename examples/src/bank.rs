//! A bank: accounts with an overdraft limit, and transfers between accounts carried out by a
//! policy. Events are compressed and encrypted, accounts are snapshotted every few events.
//! The same `Bank` runs on SQLite and on Cassandra.

use std::collections::HashSet;
use std::sync::Arc;

use eventsmith::{
    AesGcmCipher, Aggregate, CodecId, CommandError, Encrypt, Envelope, Event, EventBus,
    EventMapper, EventStore, ItemStore, Keyring, LoadError, PayloadCipher, Repository, Root,
    SaveError, SnapshotRepository, SnapshotState, SnapshotStore, Zstd,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An account was opened.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Opened {
    /// Who owns it.
    pub owner: String,
    /// How far below zero the balance may go.
    pub overdraft_limit: u64,
}
impl Event for Opened {
    const TOPIC: &'static str = "bank.Opened";
}

/// Money was paid in.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Deposited {
    /// In cents.
    pub amount: u64,
}
impl Event for Deposited {
    const TOPIC: &'static str = "bank.Deposited";
}

/// Money was paid out.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Withdrawn {
    /// In cents.
    pub amount: u64,
}
impl Event for Withdrawn {
    const TOPIC: &'static str = "bank.Withdrawn";
}

/// Money left for another account; the transfer policy credits it there.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TransferSent {
    /// Identifies the transfer on both sides.
    pub transfer_id: Uuid,
    /// The receiving account.
    pub to: Uuid,
    /// In cents.
    pub amount: u64,
}
impl Event for TransferSent {
    const TOPIC: &'static str = "bank.TransferSent";
}

/// Money arrived from another account.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct TransferReceived {
    /// Identifies the transfer on both sides.
    pub transfer_id: Uuid,
    /// The sending account.
    pub from: Uuid,
    /// In cents.
    pub amount: u64,
}
impl Event for TransferReceived {
    const TOPIC: &'static str = "bank.TransferReceived";
}

eventsmith::domain_events! {
    /// Everything that happens to an account.
    pub enum AccountEvent {
        Opened(Opened),
        Deposited(Deposited),
        Withdrawn(Withdrawn),
        TransferSent(TransferSent),
        TransferReceived(TransferReceived),
    }
}

/// An account's state.
#[derive(Default, Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Who owns it.
    pub owner: String,
    /// In cents; negative within the overdraft limit.
    pub balance: i64,
    /// How far below zero the balance may go.
    pub overdraft_limit: u64,
    /// Transfers already received, so a redelivered transfer is credited once.
    pub received: HashSet<Uuid>,
}

impl Aggregate for Account {
    type Event = AccountEvent;
    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened(e) => {
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
    /// Storage failed.
    #[error("storage failed: {0}")]
    Storage(String),
}

impl Account {
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

    /// Decides to credit a transfer, once.
    pub fn receive(
        &self,
        transfer_id: Uuid,
        from: Uuid,
        amount: u64,
    ) -> Result<Option<AccountEvent>, BankError> {
        Ok((!self.received.contains(&transfer_id)).then(|| {
            TransferReceived {
                transfer_id,
                from,
                amount,
            }
            .into()
        }))
    }
}

fn storage(e: impl std::fmt::Display) -> BankError {
    BankError::Storage(e.to_string())
}

/// The bank application: snapshotting repository, a bus for published events, and the
/// transfer policy subscribed to it. Cheap to clone; share one across tasks and requests.
pub struct Bank<S> {
    accounts: SnapshotRepository<Account, S>,
    bus: EventBus<AccountEvent>,
}

impl<S: Clone> Clone for Bank<S> {
    fn clone(&self) -> Self {
        Bank {
            accounts: self.accounts.clone(),
            bus: self.bus.clone(),
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Bank<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bank")
            .field("accounts", &self.accounts)
            .finish()
    }
}

/// How many times a command is tried when other writers got there first. Under contention
/// every round has one winner, so this bounds how many writers of one account may queue up.
const ATTEMPTS: usize = 100;

impl<S: ItemStore + SnapshotStore> Bank<S> {
    /// A bank on `store`, encrypting every event and snapshot with `cipher`.
    pub fn new(store: S, cipher: Arc<dyn PayloadCipher>) -> Self {
        let mapper = EventMapper::<AccountEvent>::builder()
            .codec(CodecId::Postcard)
            .compressor(Arc::new(Zstd::new()))
            .cipher(cipher, Encrypt::All)
            .build()
            .expect("the account events have distinct topics");
        let payloads = mapper.payloads().clone();
        let accounts =
            SnapshotRepository::new(Repository::new(EventStore::new(store, mapper)), payloads)
                .every(5);
        let bank = Bank {
            accounts,
            bus: EventBus::new(),
        };
        // The transfer policy: a sent transfer is credited to the receiving account.
        let policy = bank.accounts.clone();
        bank.bus.subscribe_topics(
            &[TransferSent::TOPIC],
            move |events: Vec<Envelope<AccountEvent>>| {
                let accounts = policy.clone();
                async move {
                    for e in events {
                        if let AccountEvent::TransferSent(t) = e.event {
                            let from = e.originator_id;
                            command(&accounts, t.to, |a| {
                                a.receive(t.transfer_id, from, t.amount)
                            })
                            .await?;
                        }
                    }
                    Ok(())
                }
            },
        );
        bank
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

    /// The accounts repository.
    pub fn accounts(&self) -> &SnapshotRepository<Account, S> {
        &self.accounts
    }

    /// Opens an account.
    pub async fn open(&self, owner: &str, overdraft_limit: u64) -> Result<Uuid, BankError> {
        let id = Uuid::new_v4();
        let mut root = Root::<Account>::create(
            id,
            Opened {
                owner: owner.to_owned(),
                overdraft_limit,
            },
        );
        self.accounts.save(&mut root).await.map_err(storage)?;
        Ok(id)
    }

    /// Pays money in.
    pub async fn deposit(&self, id: Uuid, amount: u64) -> Result<(), BankError> {
        self.run(id, |a| a.deposit(amount)).await
    }

    /// Pays money out, within the overdraft limit.
    pub async fn withdraw(&self, id: Uuid, amount: u64) -> Result<(), BankError> {
        self.run(id, |a| a.withdraw(amount)).await
    }

    /// Moves money: debits `from` now; the transfer policy credits `to`.
    pub async fn transfer(&self, from: Uuid, to: Uuid, amount: u64) -> Result<Uuid, BankError> {
        if !self
            .accounts
            .repository()
            .contains(to)
            .await
            .map_err(storage)?
        {
            return Err(BankError::NoAccount(to));
        }
        let transfer_id = Uuid::new_v4();
        self.run(from, |a| a.send(transfer_id, to, amount)).await?;
        Ok(transfer_id)
    }

    /// The balance of an account.
    pub async fn balance(&self, id: Uuid) -> Result<i64, BankError> {
        match self.accounts.get(id).await {
            Ok(root) => Ok(root.state().balance),
            Err(LoadError::NotFound { .. }) => Err(BankError::NoAccount(id)),
            Err(e) => Err(storage(e)),
        }
    }

    /// Runs a command, then publishes its committed events (to the transfer policy).
    async fn run<I>(
        &self,
        id: Uuid,
        decide: impl Fn(&Account) -> Result<I, BankError>,
    ) -> Result<(), BankError>
    where
        I: IntoIterator,
        I::Item: Into<AccountEvent>,
    {
        let committed = command(&self.accounts, id, decide).await?;
        self.bus.publish(&committed).await.map_err(storage)
    }
}

/// Load, decide, save; again on conflict. Returns the committed events.
async fn command<S: ItemStore + SnapshotStore, I>(
    accounts: &SnapshotRepository<Account, S>,
    id: Uuid,
    decide: impl Fn(&Account) -> Result<I, BankError>,
) -> Result<Vec<Envelope<AccountEvent>>, BankError>
where
    I: IntoIterator,
    I::Item: Into<AccountEvent>,
{
    for _ in 0..ATTEMPTS {
        let mut root = match accounts.get(id).await {
            Ok(root) => root,
            Err(LoadError::NotFound { .. }) => return Err(BankError::NoAccount(id)),
            Err(e) => return Err(storage(e)),
        };
        match root.execute(&decide) {
            Ok(()) => {}
            Err(CommandError::Rejected(e)) => return Err(e),
            Err(e) => return Err(storage(e)),
        }
        match accounts.save(&mut root).await {
            Ok(committed) => return Ok(committed),
            Err(SaveError::Conflict { .. }) => {
                // A short random pause spreads the writers that lost the same round.
                let jitter = (Uuid::new_v4().as_u128() % 2_000) as u64;
                tokio::time::sleep(std::time::Duration::from_micros(jitter)).await;
            }
            Err(e) => return Err(storage(e)),
        }
    }
    Err(BankError::Storage(format!(
        "account {id} too busy: {ATTEMPTS} conflicting attempts"
    )))
}
