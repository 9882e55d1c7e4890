//! Answering a client of the control socket or the metrics endpoint and closing politely.

use std::{io, time::Duration};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a closing connection is drained of what the client still sends.
const LINGER: Duration = Duration::from_secs(1);

/// Writes `answer` and shuts the write side within `deadline`, then reads (and drops)
/// what the client still sends for up to a second: closing a socket with unread data
/// resets the connection, and the client could see the reset before the answer.
pub async fn answer_and_close<S>(
    stream: &mut S,
    answer: &[u8],
    deadline: Duration,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio::time::timeout(deadline, async {
        stream.write_all(answer).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client did not read the answer"))??;
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = [0u8; 1024];
        let mut left = 64 * 1024usize;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
    Ok(())
}
