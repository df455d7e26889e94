//! `circleci agent serve --socket PATH`: the primary container's main process.
//!
//! It listens on a Unix socket in the task directory (which the runner's host
//! shares), and runs each command the runner sends in the container, streaming
//! its output back. One process started with the container replaces a `docker
//! exec` per command, which costs tens of milliseconds each.
//!
//! The protocol, per connection: the request (see [`Request::encode`]), then
//! frames of `[kind: u8][length: u32 big-endian][data]`. From the runner:
//! [`STDIN`] data and [`STDIN_EOF`]. To the runner: [`STDOUT`], [`STDERR`], and
//! one final [`EXIT`] whose data is the exit code (`i32`, big-endian).

use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const EXIT: u8 = 3;
pub const STDIN_EOF: u8 = 4;

const MAGIC: &[u8; 6] = b"ORRY1\n";
const MAX_FIELD: u32 = 16 * 1024 * 1024;

/// A command to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub stdin: bool,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn get_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn get_str(r: &mut impl Read) -> io::Result<String> {
    let n = get_u32(r)?;
    if n > MAX_FIELD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "request field too long",
        ));
    }
    let mut buf = vec![0u8; n as usize];
    r.read_exact(&mut buf)?;
    String::from_utf8(buf)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "request field is not UTF-8"))
}

impl Request {
    /// `ORRY1\n`, argc, args, envc, (name, value)..., cwd (empty for none),
    /// stdin flag; counts and string lengths are `u32` big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(self.argv.len() as u32).to_be_bytes());
        for a in &self.argv {
            put_str(&mut out, a);
        }
        out.extend_from_slice(&(self.env.len() as u32).to_be_bytes());
        for (k, v) in &self.env {
            put_str(&mut out, k);
            put_str(&mut out, v);
        }
        put_str(&mut out, self.cwd.as_deref().unwrap_or(""));
        out.push(u8::from(self.stdin));
        out
    }

    pub fn decode(r: &mut impl Read) -> io::Result<Request> {
        let mut magic = [0u8; 6];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "not an Orrery runner request",
            ));
        }
        let argc = get_u32(r)?.min(MAX_FIELD);
        let mut argv = Vec::new();
        for _ in 0..argc {
            argv.push(get_str(r)?);
        }
        let envc = get_u32(r)?.min(MAX_FIELD);
        let mut env = Vec::new();
        for _ in 0..envc {
            env.push((get_str(r)?, get_str(r)?));
        }
        let cwd = get_str(r)?;
        let mut flag = [0u8; 1];
        r.read_exact(&mut flag)?;
        Ok(Request {
            argv,
            env,
            cwd: (!cwd.is_empty()).then_some(cwd),
            stdin: flag[0] != 0,
        })
    }
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, kind: u8, data: &[u8]) -> io::Result<()> {
    let mut header = [0u8; 5];
    header[0] = kind;
    header[1..].copy_from_slice(&(data.len() as u32).to_be_bytes());
    w.write_all(&header)?;
    w.write_all(data)
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    match r.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len > MAX_FIELD {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "frame too long"));
    }
    let mut data = vec![0u8; len as usize];
    r.read_exact(&mut data)?;
    Ok(Some((header[0], data)))
}

/// Serves commands on `socket` until killed.
pub fn serve(socket: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(socket);
    // Bind under a temporary name and rename, so the runner never connects to
    // a socket that is not listening yet.
    let tmp = socket.with_extension("binding");
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o777))?;
    std::fs::rename(&tmp, socket)?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || {
            let _ = handle(stream);
        });
    }
    Ok(())
}

fn handle(stream: UnixStream) -> io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let request = Request::decode(&mut reader)?;
    let writer = Arc::new(Mutex::new(stream));
    let send = |kind: u8, data: &[u8]| -> io::Result<()> {
        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
        write_frame(&mut *w, kind, data)
    };
    let Some((program, args)) = request.argv.split_first() else {
        send(STDERR, b"empty command\n")?;
        return send(EXIT, &127i32.to_be_bytes());
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(request.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(if request.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = &request.cwd {
        command.current_dir(cwd);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            send(
                STDERR,
                format!("cannot start `{program}`: {e}\n").as_bytes(),
            )?;
            return send(EXIT, &127i32.to_be_bytes());
        }
    };
    let mut pumps = Vec::new();
    for (kind, pipe) in [
        (
            STDOUT,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            STDERR,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let writer = Arc::clone(&writer);
        pumps.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                        if write_frame(&mut *w, kind, &buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
        }));
    }
    if let Some(mut stdin) = child.stdin.take() {
        std::thread::spawn(move || {
            while let Ok(Some((kind, data))) = read_frame(&mut reader) {
                match kind {
                    STDIN => {
                        if stdin.write_all(&data).is_err() {
                            break;
                        }
                    }
                    _ => break,
                }
            }
            // Dropping stdin closes the child's input.
        });
    }
    for p in pumps {
        let _ = p.join();
    }
    let status = child.wait()?;
    let code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1);
    send(EXIT, &code.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let r = Request {
            argv: vec!["/bin/sh".into(), "-c".into(), "echo é".into()],
            env: vec![("A".into(), "1".into()), ("EMPTY".into(), String::new())],
            cwd: Some("/tmp".into()),
            stdin: true,
        };
        let bytes = r.encode();
        assert_eq!(Request::decode(&mut &bytes[..]).unwrap(), r);
        assert!(Request::decode(&mut &b"garbage-request"[..]).is_err());
        assert!(Request::decode(&mut &bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn serves_commands_with_stdin_and_exit_codes() {
        let dir = std::env::temp_dir().join(format!("orrery-serve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("agent.sock");
        let s2 = socket.clone();
        std::thread::spawn(move || serve(&s2));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut stream = loop {
            match UnixStream::connect(&socket) {
                Ok(s) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        };
        let request = Request {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat; echo \"[$X]\" >&2; exit 5".into(),
            ],
            env: vec![("X".into(), "x-value".into())],
            cwd: None,
            stdin: true,
        };
        stream.write_all(&request.encode()).unwrap();
        write_frame(&mut stream, STDIN, b"from stdin\n").unwrap();
        write_frame(&mut stream, STDIN_EOF, b"").unwrap();
        let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
        while let Some((kind, data)) = read_frame(&mut stream).unwrap() {
            match kind {
                STDOUT => out.extend(data),
                STDERR => err.extend(data),
                EXIT => {
                    code = Some(i32::from_be_bytes(data.try_into().unwrap()));
                    break;
                }
                _ => panic!("unexpected frame {kind}"),
            }
        }
        assert_eq!(out, b"from stdin\n");
        assert_eq!(err, b"[x-value]\n");
        assert_eq!(code, Some(5));

        let mut stream = UnixStream::connect(&socket).unwrap();
        let missing = Request {
            argv: vec!["/no/such/program".into()],
            ..Default::default()
        };
        stream.write_all(&missing.encode()).unwrap();
        let mut saw_error = false;
        while let Some((kind, data)) = read_frame(&mut stream).unwrap() {
            if kind == STDERR && String::from_utf8_lossy(&data).contains("cannot start") {
                saw_error = true;
            }
            if kind == EXIT {
                assert_eq!(i32::from_be_bytes(data.try_into().unwrap()), 127);
                break;
            }
        }
        assert!(saw_error);
    }
}
