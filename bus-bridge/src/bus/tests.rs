//! Tests of the bus alone: no tokio, no sockets; time is a number.
