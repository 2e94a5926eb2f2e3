//! `join_all` for futures that borrow from the caller (and so cannot be spawned), without
//! pulling in the `futures` crates for one function.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Polls every future on the current task until all are done; outputs in input order.
pub async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<(usize, Pin<Box<F>>)> = futures.into_iter().map(Box::pin).enumerate().collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        pending.retain_mut(|(i, f)| match f.as_mut().poll(cx) {
            Poll::Ready(out) => {
                outputs[*i] = Some(out);
                false
            }
            Poll::Pending => true,
        });
        if pending.is_empty() { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn outputs_keep_input_order() {
        let delays = [30u64, 10, 20];
        let out = super::join_all(delays.iter().map(|&ms| async move {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            ms
        }))
        .await;
        assert_eq!(out, vec![30, 10, 20]);
    }
}
