//! Shared HTTP plumbing: the one reqwest client, the retry classifier, backoff with jitter.
