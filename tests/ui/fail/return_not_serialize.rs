use cache_runtime::cached;

pub struct Connection;

#[derive(Debug)]
pub struct DbError;

#[cached(key = "conn:{id}", ttl = 60)]
async fn connect(id: u64) -> Result<Connection, DbError> {
    let _ = id;
    Ok(Connection)
}

#[cached(key = "plain:{id}", ttl = 60)]
async fn plain(id: u64) -> Connection {
    let _ = id;
    Connection
}

fn main() {}
