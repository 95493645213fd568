//! pppd-lite: PPP (LCP, PAP/CHAP/MS-CHAPv2, IPCP) as a sans-IO library.
//!
//! Not built yet: this crate is filled by the L2TP/PPP issue. It holds no code so far.
