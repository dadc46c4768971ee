//! The demo order book of the sandbox: 200 accounts, about 5,000 executed orders over a
//! trading day on 8 symbols, and a bad burst to roll back (about 60 duplicate executions
//! on one symbol within four minutes, sharing transaction ids, as a faulty deploy leaves
//! them). The same seed and date always give the same book.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::store::db::{SeedOrder, SeedUnexecuted};

/// The symbols of the demo book and their opening prices.
pub const SYMBOLS: [(&str, Decimal); 8] = [
    ("EURUSD", Decimal::from_parts(10850, 0, 0, false, 4)),
    ("GBPUSD", Decimal::from_parts(12700, 0, 0, false, 4)),
    ("USDJPY", Decimal::from_parts(15120, 0, 0, false, 2)),
    ("USDCHF", Decimal::from_parts(8800, 0, 0, false, 4)),
    ("AUDUSD", Decimal::from_parts(6550, 0, 0, false, 4)),
    ("USDCAD", Decimal::from_parts(13600, 0, 0, false, 4)),
    ("NZDUSD", Decimal::from_parts(6000, 0, 0, false, 4)),
    ("EURGBP", Decimal::from_parts(8550, 0, 0, false, 4)),
];

/// The symbol of the bad burst.
pub const BURST_SYMBOL: &str = "GBPUSD";
/// Margin and commission rates of every demo instrument (as in the migration).
const MARGIN_RATE: Decimal = Decimal::from_parts(2, 0, 0, false, 2);
const COMMISSION_RATE: Decimal = Decimal::from_parts(2, 0, 0, false, 4);

/// Shape of the book.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// Random seed: same seed, same book.
    pub seed: u64,
    /// The trading day (UTC).
    pub date: NaiveDate,
    /// Accounts.
    pub accounts: usize,
    /// Normal executed orders (the burst comes on top).
    pub orders: usize,
    /// Transaction groups in the burst; each is executed `burst_copies` times.
    pub burst_groups: usize,
    /// Executions per burst group.
    pub burst_copies: usize,
}

impl DemoSpec {
    /// The standard sandbox book.
    pub fn standard(seed: u64, date: NaiveDate) -> Self {
        DemoSpec { seed, date, accounts: 200, orders: 5000, burst_groups: 20, burst_copies: 3 }
    }
}

/// Where the bad burst is, for messages and tests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BurstInfo {
    /// Its symbol.
    pub symbol: String,
    /// First execution (inclusive).
    pub from: DateTime<Utc>,
    /// End of the window (exclusive).
    pub to: DateTime<Utc>,
    /// Duplicate executions in it.
    pub orders: usize,
    /// Transaction groups.
    pub transaction_ids: Vec<Uuid>,
    /// Users touched.
    pub users: usize,
}

/// A generated book, ready to write.
#[derive(Debug, Clone)]
pub struct DemoBook {
    /// Accounts with their deposits.
    pub accounts: Vec<(Uuid, Decimal)>,
    /// Executed orders, normal and burst, in time order.
    pub executed: Vec<SeedOrder>,
    /// Pending and failed orders.
    pub unexecuted: Vec<SeedUnexecuted>,
    /// The burst.
    pub burst: BurstInfo,
}

fn uuid(rng: &mut ChaCha8Rng) -> Uuid {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn cost(quantity: Decimal, price: Decimal) -> Decimal {
    let notional = quantity * price;
    (notional * MARGIN_RATE).round_dp(8) + (notional * COMMISSION_RATE).round_dp(8)
}

/// Generates the book. Pure: no I/O, deterministic in `spec`.
pub fn generate(spec: &DemoSpec) -> DemoBook {
    let mut g = Generator::new(spec);
    let mut executed = g.trading_day();
    let burst = g.burst(&mut executed);
    executed.sort_by_key(|o| (o.at, o.id));
    let unexecuted = g.unexecuted(&burst.users);
    DemoBook {
        accounts: g.accounts,
        executed,
        unexecuted,
        burst: BurstInfo {
            symbol: BURST_SYMBOL.to_string(),
            from: g.burst_from,
            to: g.burst_to,
            orders: burst.orders,
            transaction_ids: burst.transaction_ids,
            users: burst.users.len(),
        },
    }
}

/// The burst as generated: orders written, their groups, the accounts touched.
struct Burst {
    orders: usize,
    transaction_ids: Vec<Uuid>,
    users: std::collections::BTreeSet<usize>,
}

/// The book being generated: one random stream, drawn from in a fixed order (the same
/// seed gives the same book only as long as that order does not change).
struct Generator<'a> {
    spec: &'a DemoSpec,
    rng: ChaCha8Rng,
    open: DateTime<Utc>,
    burst_from: DateTime<Utc>,
    burst_to: DateTime<Utc>,
    accounts: Vec<(Uuid, Decimal)>,
    /// Each account's cash left, so no order is written that it could not pay for.
    cash: Vec<Decimal>,
    /// Each symbol's last price (a small random walk).
    prices: Vec<Decimal>,
}

/// A transaction group being placed: its id, the account, and how many more legs follow.
type OpenGroup = (Uuid, usize, usize);

const SESSION_SECS: i64 = 9 * 3600;

impl<'a> Generator<'a> {
    /// The accounts with their deposits.
    fn new(spec: &'a DemoSpec) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let open = Utc.from_utc_datetime(&spec.date.and_hms_opt(7, 0, 0).unwrap_or_default());
        let burst_from = open + Duration::minutes(6 * 60 + 2); // 13:02
        let mut accounts = Vec::with_capacity(spec.accounts);
        let mut cash = Vec::with_capacity(spec.accounts);
        for _ in 0..spec.accounts {
            let deposit = Decimal::from(rng.random_range(200..=1000) * 100);
            accounts.push((uuid(&mut rng), deposit));
            cash.push(deposit);
        }
        Generator {
            spec,
            rng,
            open,
            burst_from,
            burst_to: burst_from + Duration::minutes(4),
            accounts,
            cash,
            prices: SYMBOLS.iter().map(|s| s.1).collect(),
        }
    }

    /// The normal orders of the trading day, in time order.
    fn trading_day(&mut self) -> Vec<SeedOrder> {
        // Times first, so the orders are written in time order and balances are checked in it.
        let mut times: Vec<i64> = (0..self.spec.orders).map(|_| self.rng.random_range(0..SESSION_SECS)).collect();
        times.sort_unstable();
        let mut executed = Vec::with_capacity(self.spec.orders + self.spec.burst_groups * self.spec.burst_copies);
        let mut group: Option<OpenGroup> = None;
        for (n, secs) in times.into_iter().enumerate() {
            executed.extend(self.day_order(n, secs, &mut group));
        }
        executed
    }

    /// One order of the day at `secs` after the open, unless its account cannot pay.
    fn day_order(&mut self, n: usize, secs: i64, group: &mut Option<OpenGroup>) -> Option<SeedOrder> {
        let rng = &mut self.rng;
        let at = self.open + Duration::seconds(secs) + Duration::milliseconds(rng.random_range(0..1000));
        let mut sym = rng.random_range(0..SYMBOLS.len());
        // Keep the burst window of the burst symbol to the burst alone.
        if SYMBOLS[sym].0 == BURST_SYMBOL && at >= self.burst_from && at < self.burst_to {
            sym = (sym + 1) % SYMBOLS.len();
        }
        // A small random walk, in basis points of the opening price.
        let step = Decimal::from(rng.random_range(-3i64..=3)) * SYMBOLS[sym].1 / Decimal::from(10_000);
        self.prices[sym] = (self.prices[sym] + step).round_dp(5).max(SYMBOLS[sym].1 / Decimal::from(2));
        let price = self.prices[sym];
        let (account, tx) = self.group_of(group);
        let rng = &mut self.rng;
        let notional = Decimal::from(rng.random_range(10..=500) * 100);
        let quantity = (notional / price).round_dp(0).max(Decimal::ONE);
        let total = cost(quantity, price);
        let id = uuid(rng);
        let position_id = uuid(rng);
        if self.cash[account] < total {
            return None;
        }
        self.cash[account] -= total;
        Some(SeedOrder {
            id,
            position_id,
            user_id: self.accounts[account].0,
            symbol: SYMBOLS[sym].0.to_string(),
            order_type: if rng.random_range(0..10) < 8 { "market" } else { "limit" },
            side: if rng.random_bool(0.5) { "buy" } else { "sell" },
            quantity,
            price,
            transaction_id: tx,
            idempotency_key: format!("ord-{n:05}"),
            at,
        })
    }

    /// The account and transaction id of the next order. Most orders stand alone; some
    /// are legs of a group placed together; a few old clients send no transaction id.
    fn group_of(&mut self, group: &mut Option<OpenGroup>) -> (usize, Option<Uuid>) {
        if let Some((tx, account, left)) = group.take() {
            if left > 1 {
                *group = Some((tx, account, left - 1));
            }
            return (account, Some(tx));
        }
        let rng = &mut self.rng;
        let account = rng.random_range(0..self.spec.accounts);
        let roll = rng.random_range(0..100);
        if roll < 8 {
            let tx = uuid(rng);
            *group = Some((tx, account, rng.random_range(1..=2)));
            (account, Some(tx))
        } else if roll < 11 {
            (account, None)
        } else {
            (account, Some(uuid(rng)))
        }
    }

    /// The burst: a faulty deploy re-executed each order of some groups a few times.
    fn burst(&mut self, executed: &mut Vec<SeedOrder>) -> Burst {
        let burst_sym = SYMBOLS.iter().position(|s| s.0 == BURST_SYMBOL).unwrap_or(1);
        let mut burst = Burst { orders: 0, transaction_ids: Vec::new(), users: Default::default() };
        for g in 0..self.spec.burst_groups {
            let rng = &mut self.rng;
            let tx = uuid(rng);
            let side = if rng.random_bool(0.5) { "buy" } else { "sell" };
            let quantity = Decimal::from(rng.random_range(5..=100) * 1000);
            // Affected users are distinct and could pay for every copy (the deploy did).
            let need = cost(quantity, self.prices[burst_sym]) * Decimal::from(self.spec.burst_copies as u64 + 1);
            let mut account = rng.random_range(0..self.spec.accounts);
            for _ in 0..self.spec.accounts {
                if !burst.users.contains(&account) && self.cash[account] >= need {
                    break;
                }
                account = (account + 1) % self.spec.accounts;
            }
            let start = self.burst_from + Duration::milliseconds(self.rng.random_range(0..200_000));
            let mut wrote = false;
            for copy in 0..self.spec.burst_copies {
                let rng = &mut self.rng;
                let price = (self.prices[burst_sym]
                    + Decimal::from(rng.random_range(-2i64..=2)) / Decimal::from(100_000))
                .round_dp(5);
                let total = cost(quantity, price);
                if self.cash[account] < total {
                    continue;
                }
                self.cash[account] -= total;
                let at = start + Duration::milliseconds(copy as i64 * rng.random_range(150..4000));
                executed.push(SeedOrder {
                    id: uuid(rng),
                    position_id: uuid(rng),
                    user_id: self.accounts[account].0,
                    symbol: BURST_SYMBOL.to_string(),
                    order_type: "market",
                    side,
                    quantity,
                    price,
                    transaction_id: Some(tx),
                    idempotency_key: format!("deploy-4711-g{g:02}-try{copy}"),
                    at: at.min(self.burst_to - Duration::milliseconds(1)),
                });
                burst.orders += 1;
                wrote = true;
            }
            if wrote {
                burst.users.insert(account);
                burst.transaction_ids.push(tx);
            }
        }
        burst
    }

    /// Orders that never executed: a few failed for lack of funds, a few still pending
    /// (of users who are not in the burst, so the burst's pre-checks pass).
    fn unexecuted(&mut self, burst_users: &std::collections::BTreeSet<usize>) -> Vec<SeedUnexecuted> {
        let mut unexecuted = Vec::new();
        let mut k = 0;
        while unexecuted.len() < 12 {
            k += 1;
            let rng = &mut self.rng;
            let account = rng.random_range(0..self.spec.accounts);
            if burst_users.contains(&account) {
                continue;
            }
            let sym = rng.random_range(0..SYMBOLS.len());
            let pending = unexecuted.len() < 3;
            let at = if pending {
                self.open + Duration::seconds(SESSION_SECS - rng.random_range(1..120))
            } else {
                self.open + Duration::seconds(rng.random_range(0..SESSION_SECS))
            };
            let quantity = Decimal::from(rng.random_range(1000..=5000) * 1000);
            let price = self.prices[sym];
            unexecuted.push(SeedUnexecuted {
                id: uuid(rng),
                user_id: self.accounts[account].0,
                symbol: SYMBOLS[sym].0.to_string(),
                side: if rng.random_bool(0.5) { "buy" } else { "sell" },
                quantity,
                price,
                status: if pending { "pending" } else { "failed" },
                failure_reason: (!pending).then(|| {
                    format!("insufficient_funds: needs {}, balance {}", cost(quantity, price), self.cash[account])
                }),
                transaction_id: Some(uuid(rng)),
                idempotency_key: format!("late-{k:03}"),
                at,
            });
        }
        unexecuted
    }
}

/// The trading day of a book seeded now: today once the session (07:00–16:00 UTC) is
/// over, else yesterday, so no order lies in the future.
pub fn default_trading_date(now: DateTime<Utc>) -> NaiveDate {
    let today = now.date_naive();
    if now.time() >= chrono::NaiveTime::from_hms_opt(16, 0, 0).unwrap_or_default() {
        today
    } else {
        today.pred_opt().unwrap_or(today)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(seed: u64) -> DemoSpec {
        DemoSpec::standard(seed, NaiveDate::from_ymd_opt(2026, 11, 25).unwrap_or_default())
    }

    #[test]
    fn same_seed_same_book() {
        let a = generate(&spec(7));
        let b = generate(&spec(7));
        assert_eq!(a.accounts, b.accounts);
        assert_eq!(
            a.executed.iter().map(|o| o.id).collect::<Vec<_>>(),
            b.executed.iter().map(|o| o.id).collect::<Vec<_>>()
        );
        let c = generate(&spec(8));
        assert_ne!(a.accounts, c.accounts);
    }

    #[test]
    fn has_the_shape_the_issue_asks_for() {
        let book = generate(&spec(42));
        assert_eq!(book.accounts.len(), 200);
        let normal = book.executed.len() - book.burst.orders;
        assert!((4500..=5000).contains(&normal), "normal orders: {normal}");
        assert!((55..=60).contains(&book.burst.orders), "burst: {}", book.burst.orders);
        assert_eq!(book.burst.to - book.burst.from, Duration::minutes(4));
        let in_window: Vec<_> = book
            .executed
            .iter()
            .filter(|o| o.symbol == BURST_SYMBOL && o.at >= book.burst.from && o.at < book.burst.to)
            .collect();
        assert_eq!(in_window.len(), book.burst.orders);
        assert!(in_window.iter().all(|o| o.transaction_id.is_some_and(|t| book.burst.transaction_ids.contains(&t))));
        let symbols: std::collections::BTreeSet<_> = book.executed.iter().map(|o| o.symbol.as_str()).collect();
        assert_eq!(symbols.len(), 8);
    }

    #[test]
    fn no_account_is_overdrawn() {
        let book = generate(&spec(3));
        let mut cash: std::collections::HashMap<Uuid, Decimal> = book.accounts.iter().cloned().collect();
        for o in &book.executed {
            let c = cash.entry(o.user_id).or_default();
            *c -= cost(o.quantity, o.price);
            assert!(*c >= Decimal::ZERO);
        }
    }

    #[test]
    fn trading_date_is_never_in_the_future() {
        let morning = Utc.with_ymd_and_hms(2026, 11, 26, 3, 0, 0).single().unwrap_or_default();
        assert_eq!(default_trading_date(morning), NaiveDate::from_ymd_opt(2026, 11, 25).unwrap_or_default());
        let evening = Utc.with_ymd_and_hms(2026, 11, 26, 18, 0, 0).single().unwrap_or_default();
        assert_eq!(default_trading_date(evening), NaiveDate::from_ymd_opt(2026, 11, 26).unwrap_or_default());
    }
}
