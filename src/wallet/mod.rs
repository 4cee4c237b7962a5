//! Smart wallets (filled in by the wallet work).
