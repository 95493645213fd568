//! Test client for Roadgate: an IKEv1 initiator with ESP that drives the server's sans-IO cores
//! in memory, over loopback UDP, or across network namespaces.
