// The few libc calls the kernel layer needs, bound once through koffi. Every
// wrapper returns the raw result; callers turn -1 into an Error with
// sysError() while errno is still fresh (koffi keeps it per call).
import { constants } from 'node:os';
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

type Fn<A extends unknown[], R> = ((...args: A) => R) & {
  async: (...args: [...A, (err: unknown, res: R) => void]) => void;
};

function bind<A extends unknown[], R>(decl: string): Fn<A, R> {
  return libc.func(decl) as unknown as Fn<A, R>;
}

export const socket = bind<[number, number, number], number>('int socket(int domain, int type, int protocol)');
export const close = bind<[number], number>('int close(int fd)');
export const open = bind<[string, number, number], number>('int open(const char *path, int flags, int mode)');
export const setns = bind<[number, number], number>('int setns(int fd, int nstype)');
export const unshare = bind<[number], number>('int unshare(int flags)');
export const send = bind<[number, Buffer, number, number], number>(
  'long send(int fd, const void *buf, size_t len, int flags)',
);
export const recv = bind<[number, Buffer, number, number], number>(
  'long recv(int fd, _Out_ void *buf, size_t len, int flags)',
);
export const sendto = bind<[number, Buffer, number, number, Buffer, number], number>(
  'long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)',
);
export const setsockopt = bind<[number, number, number, Buffer, number], number>(
  'int setsockopt(int fd, int level, int name, const void *val, uint32_t len)',
);
export const getsockopt = bind<[number, number, number, Buffer, Buffer], number>(
  'int getsockopt(int fd, int level, int name, void *val, void *len)',
);
export const bindAddr = bind<[number, Buffer, number], number>('int bind(int fd, const void *addr, uint32_t len)');
export const listen = bind<[number, number], number>('int listen(int fd, int backlog)');
export const getsockname = bind<[number, Buffer, Buffer], number>('int getsockname(int fd, void *addr, void *len)');
export const mount = bind<[string | null, string, string | null, number, null], number>(
  'int mount(const char *src, const char *target, const char *fstype, unsigned long flags, const void *data)',
);
export const umount2 = bind<[string, number], number>('int umount2(const char *target, int flags)');
/** ioctl with a pointer argument (struct ifreq and friends). */
export const ioctlPtr = bind<[number, number, Buffer], number>('int ioctl(int fd, unsigned long req, void *arg)');
/** ioctl with an integer argument (TUNSETPERSIST, NS_GET_NSTYPE). */
export const ioctlInt = bind<[number, number, number], number>(
  'int ioctl(int fd, unsigned long req, unsigned long arg)',
);
/** Set or restore the calling thread's signal mask (how: SIG_BLOCK 0, SIG_SETMASK 2). */
export const pthreadSigmask = bind<[number, Buffer | null, Buffer | null], number>(
  'int pthread_sigmask(int how, const void *set, _Out_ void *oldset)',
);
export const SIG_BLOCK = 0;
export const SIG_SETMASK = 2;
/** sigset_t as glibc lays it out: 1024 bits. */
export const SIGSET_BYTES = 128;

export const ifNameToIndex = bind<[string], number>('unsigned int if_nametoindex(const char *name)');

export function errno(): number {
  return koffi.errno();
}

const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

/** 'EEXIST' for 17, 'E123' for numbers Node does not know. */
export function errnoName(n: number): string {
  return errnoNames.get(n) ?? `E${n}`;
}

/** An Error for a failed syscall, with errno attached as in Node's own errors. */
export function sysError(what: string, err = errno()): Error & { errno: number; code: string } {
  const code = errnoName(err);
  const e = new Error(`${what}: ${code}`) as Error & { errno: number; code: string };
  e.errno = err;
  e.code = code;
  return e;
}

export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_CLOEXEC = 0o2000000;
export const CLONE_NEWNET = 0x40000000;
export const MS_BIND = 4096;
export const MS_REC = 16384;
export const MS_SHARED = 1 << 20;
export const MNT_DETACH = 2;
export const SOCK_CLOEXEC = 0o2000000;
