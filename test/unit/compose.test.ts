// Static checks of docker-compose.yml and the Dockerfile: no Docker engine runs where the tests
// run, so this is the only thing that keeps the container setup from rotting silently.
//
// Every rule is a function returning a list of problems. Each rule is run on the real files
// (no problems expected) and on a mutated copy that breaks exactly that rule (its problem
// expected), so that no check can pass whatever the files say.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

// dist/test/unit/compose.test.js -> repository root
const repoRoot = fileURLToPath(new URL('../../..', import.meta.url));
const read = (rel: string): string => fs.readFileSync(path.join(repoRoot, rel), 'utf8');

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Everything the rules look at, so that tests can hand them mutated copies. */
interface Repo {
  compose: unknown; // parsed docker-compose.yml
  dockerfiles: Map<string, string>; // repo-relative path -> text, for the files that exist
  dockerignore: string | null;
  packageJson: Obj;
  tsconfig: Obj;
  exists: (rel: string) => boolean;
}

function loadRepo(): Repo {
  const dockerfiles = new Map<string, string>();
  for (const name of fs.readdirSync(repoRoot)) {
    if (/^Dockerfile/.test(name) || name.endsWith('.Dockerfile')) dockerfiles.set(name, read(name));
  }
  return {
    compose: parse(read('docker-compose.yml')),
    dockerfiles,
    dockerignore: fs.existsSync(path.join(repoRoot, '.dockerignore')) ? read('.dockerignore') : null,
    packageJson: JSON.parse(read('package.json')) as Obj,
    tsconfig: JSON.parse(read('tsconfig.json')) as Obj,
    exists: (rel) => fs.existsSync(path.join(repoRoot, rel)),
  };
}

function services(repo: Repo): Map<string, Obj> {
  const out = new Map<string, Obj>();
  if (isObj(repo.compose) && isObj(repo.compose['services'])) {
    for (const [name, svc] of Object.entries(repo.compose['services'])) if (isObj(svc)) out.set(name, svc);
  }
  return out;
}

function strings(v: Json | undefined): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  return [];
}

/** A service's environment as a map (compose allows a map or a list of NAME=VALUE). */
function environment(svc: Obj): Map<string, string> {
  const env = new Map<string, string>();
  const raw = svc['environment'];
  if (isObj(raw)) {
    for (const [k, v] of Object.entries(raw)) env.set(k, v === null ? '' : String(v));
  } else {
    for (const item of strings(raw)) {
      const eq = item.indexOf('=');
      env.set(eq < 0 ? item : item.slice(0, eq), eq < 0 ? '' : item.slice(eq + 1));
    }
  }
  return env;
}

/** The Dockerfile a service builds, repo-relative, or null when it has no build section. */
function serviceDockerfile(svc: Obj): string | null {
  const build = svc['build'];
  if (typeof build === 'string') return path.posix.join(build, 'Dockerfile');
  if (!isObj(build)) return null;
  const context = typeof build['context'] === 'string' ? build['context'] : '.';
  const file = typeof build['dockerfile'] === 'string' ? build['dockerfile'] : 'Dockerfile';
  return path.posix.normalize(path.posix.join(context, file));
}

/** Dockerfile instructions: continuation lines joined, comments and blank lines dropped. */
function instructions(dockerfile: string): { op: string; args: string }[] {
  const joined = dockerfile
    .split('\n')
    .filter((line) => !/^\s*#/.test(line))
    .join('\n')
    .replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '')
    .map((line) => {
      const m = /^(\S+)\s*(.*)$/.exec(line);
      return { op: (m?.[1] ?? '').toUpperCase(), args: m?.[2] ?? '' };
    });
}

/** Packages named by `apt-get install` (or `apt install`) in the Dockerfile's RUN lines. */
function aptPackages(dockerfile: string): Set<string> {
  const pkgs = new Set<string>();
  for (const { op, args } of instructions(dockerfile)) {
    if (op !== 'RUN') continue;
    for (const command of args.split(/&&|\|\||;|\|/)) {
      const words = command.trim().split(/\s+/).filter((w) => !/^[A-Z_]+=/.test(w));
      const apt = words.findIndex((w) => /^(\S*\/)?apt(-get)?$/.test(w));
      const at = apt < 0 ? -1 : words.indexOf('install', apt + 1);
      if (at < 0) continue;
      for (const w of words.slice(at + 1)) if (!w.startsWith('-')) pkgs.add(w.replace(/[=].*$/, ''));
    }
  }
  return pkgs;
}

/** The command line of a service as one string (compose allows a string or an exec array). */
function commandLine(svc: Obj): string {
  const cmd = svc['command'];
  return Array.isArray(cmd) ? strings(cmd).join(' ') : typeof cmd === 'string' ? cmd : '';
}

/** npm scripts a shell command line runs directly: npm test, npm run X, npm start, ... */
function npmScriptsIn(line: string): string[] {
  const found: string[] = [];
  const re = /\bnpm\s+(?:--?\S+\s+)*(run-script|run|test|t|start|stop|restart)(?=\s|$|[;&|])(?:(?:\s+--?\S+)*\s+([^-\s;&|][^\s;&|]*))?/g;
  for (const m of line.matchAll(re)) {
    const verb = m[1] ?? '';
    if (verb === 'run' || verb === 'run-script') {
      if (m[2] !== undefined) found.push(m[2]);
    } else {
      found.push(verb === 't' ? 'test' : verb);
    }
  }
  return found;
}

/** Source files a command line runs with `node FILE` must exist (dist/X.js <- X.ts). */
function nodeEntryPoints(line: string): string[] {
  return [...line.matchAll(/\bnode\s+(?:--?\S+\s+)*([^\s;&|]+\.m?js)\b/g)].map((m) => m[1] ?? '');
}

// ---------------------------------------------------------------- rules

function ruleServicesPresent(repo: Repo): string[] {
  const svcs = services(repo);
  return ['test', 'demo'].filter((name) => !svcs.has(name)).map((name) => `service "${name}" is missing`);
}

function ruleDockerfilesExist(repo: Repo): string[] {
  const problems: string[] = [];
  for (const [name, svc] of services(repo)) {
    const file = serviceDockerfile(svc);
    if (file === null) problems.push(`service "${name}" has no build section`);
    else if (!repo.dockerfiles.has(file)) problems.push(`service "${name}" builds ${file}, which does not exist`);
  }
  return problems;
}

function ruleNpmScriptsExist(repo: Repo): string[] {
  const scripts = isObj(repo.packageJson['scripts']) ? repo.packageJson['scripts'] : {};
  const problems: string[] = [];
  for (const [name, svc] of services(repo)) {
    const line = commandLine(svc);
    if (line === '') {
      problems.push(`service "${name}" has no command`);
      continue;
    }
    // Follow npm scripts that run further npm scripts (npm test -> npm run build ...).
    const queue = npmScriptsIn(line);
    const seen = new Set<string>();
    for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
      if (seen.has(s)) continue;
      seen.add(s);
      const body = scripts[s];
      if (typeof body !== 'string') {
        problems.push(`service "${name}" runs npm script "${s}", which package.json does not define`);
        continue;
      }
      queue.push(...npmScriptsIn(body));
    }
    for (const entry of nodeEntryPoints(line)) {
      const source = entry.replace(/^dist\//, '').replace(/\.(m?)js$/, '.$1ts');
      if (!repo.exists(entry.startsWith('dist/') ? source : entry)) {
        problems.push(`service "${name}" runs node ${entry}, but ${source} does not exist`);
      }
    }
  }
  return problems;
}

function hasItem(list: Json | undefined, pred: (s: string) => boolean): boolean {
  return strings(list).some(pred);
}

function ruleFusePrivileges(repo: Repo, serviceName: string): string[] {
  const svc = services(repo).get(serviceName);
  if (!svc) return [`service "${serviceName}" is missing`];
  const problems: string[] = [];
  const privileged = svc['privileged'] === true;
  const sysAdmin = hasItem(svc['cap_add'], (c) => /^(CAP_)?(SYS_ADMIN|ALL)$/i.test(c));
  const unconfined = hasItem(svc['security_opt'], (o) => /^apparmor[:=]unconfined$/.test(o));
  if (!privileged && !(sysAdmin && unconfined)) {
    problems.push(`service "${serviceName}" is neither privileged nor has SYS_ADMIN with apparmor:unconfined`);
  }
  // Even a privileged container should name /dev/fuse: rootless engines do not pass all devices.
  if (!hasItem(svc['devices'], (d) => d.split(':')[0] === '/dev/fuse')) {
    problems.push(`service "${serviceName}" does not get /dev/fuse in devices`);
  }
  return problems;
}

function ruleTestEnvironment(repo: Repo): string[] {
  const svc = services(repo).get('test');
  if (!svc) return ['service "test" is missing'];
  const problems: string[] = [];
  const env = environment(svc);
  if (env.get('CI') !== 'true') problems.push(`service "test" sets CI=${env.get('CI') ?? '(unset)'}, not CI=true`);
  if (!npmScriptsIn(commandLine(svc)).includes('test')) problems.push('service "test" does not run npm test');

  // TMPDIR must be inside a tmpfs or a volume: an overlayfs upper directory cannot sit on
  // the container's root filesystem, which is itself an overlay.
  const targets: string[] = [];
  for (const t of strings(svc['tmpfs'])) targets.push(t.split(':')[0] ?? '');
  const volumes = svc['volumes'];
  if (Array.isArray(volumes)) {
    for (const v of volumes) {
      if (typeof v === 'string') {
        const parts = v.split(':');
        targets.push((parts.length > 1 ? parts[1] : parts[0]) ?? '');
      } else if (isObj(v) && typeof v['target'] === 'string') {
        targets.push(v['target']);
      }
    }
  }
  const tmpdir = env.get('TMPDIR');
  if (tmpdir === undefined || tmpdir === '') {
    problems.push('service "test" does not set TMPDIR');
  } else {
    const normalized = path.posix.normalize(tmpdir);
    const inside = targets.some((t) => t !== '' && t !== '/' && (normalized === t || normalized.startsWith(`${t.replace(/\/$/, '')}/`)));
    if (!inside) problems.push(`service "test" has TMPDIR=${tmpdir}, which is not on a tmpfs or volume (${targets.join(', ') || 'none'})`);
  }
  return problems;
}

/** The Debian packages CI installs (.ci/run's CI_PACKAGES): the test service needs every one. */
function ciPackages(): string[] {
  const m = /^CI_PACKAGES=\(([^)]*)\)/m.exec(read('.ci/run'));
  return m?.[1]?.split(/\s+/).filter((x) => x !== '') ?? [];
}
const REQUIRED_APT = ['libfuse2', 'fuse3', 'attr', 'fuse-overlayfs', ...ciPackages()].filter((p, i, all) => all.indexOf(p) === i);

function ruleDockerfileContents(repo: Repo): string[] {
  const problems: string[] = [];
  for (const [file, text] of repo.dockerfiles) {
    const ins = instructions(text);
    const from = ins.find((i) => i.op === 'FROM')?.args ?? '';
    if (!/^(--\S+\s+)*node:20\b/.test(from)) problems.push(`${file}: FROM ${from || '(none)'}, not node:20`);
    const pkgs = aptPackages(text);
    for (const p of REQUIRED_APT) if (!pkgs.has(p)) problems.push(`${file}: does not apt-get install ${p}`);
    const runs = ins.filter((i) => i.op === 'RUN').map((i) => i.args);
    if (!runs.some((r) => /\bnpm\s+ci\b/.test(r))) problems.push(`${file}: does not run npm ci`);
    if (!runs.some((r) => /\bnpm\s+run\s+build\b|\btsc\b/.test(r))) problems.push(`${file}: does not build (npm run build)`);
    // layerfs refuses to mount with an unpatched fuse-native: the image must apply the patch
    // and build the binding, which npm ci --ignore-scripts would skip.
    const ignoresScripts = runs.some((r) => /\bnpm\s+ci\b[^&;]*--ignore-scripts/.test(r));
    const patches = ins.some((i) => i.op === 'COPY' && /(^|\s)patches\/?(\s|$)/.test(i.args));
    if (!patches) problems.push(`${file}: does not COPY patches/ (the fuse-native patch)`);
    if (ignoresScripts && !runs.some((r) => /patch-package/.test(r) && /build-native\.sh/.test(r))) {
      problems.push(`${file}: npm ci --ignore-scripts without patch-package and scripts/build-native.sh`);
    }
  }
  return problems;
}

/** What `npm test` needs in the image must be copied into it, and a host's node_modules not. */
function ruleDockerfileCopies(repo: Repo): string[] {
  const include = Array.isArray(repo.tsconfig['include']) ? strings(repo.tsconfig['include']) : [];
  const scripts = isObj(repo.packageJson['scripts']) ? repo.packageJson['scripts'] : {};
  const needed = new Set<string>(['package.json', 'package-lock.json', 'tsconfig.json', 'bin']);
  for (const pattern of include) needed.add(pattern.split('/')[0] ?? pattern);
  for (const body of Object.values(scripts)) {
    if (typeof body !== 'string') continue;
    for (const m of body.matchAll(/--config\s+(\S+)/g)) if (m[1] !== undefined) needed.add(m[1]);
  }
  const problems: string[] = [];
  for (const [file, text] of repo.dockerfiles) {
    const sources: string[] = [];
    for (const { op, args } of instructions(text)) {
      if (op !== 'COPY' && op !== 'ADD') continue;
      if (/--from=/.test(args)) continue;
      const words = args.split(/\s+/).filter((w) => !w.startsWith('--'));
      sources.push(...words.slice(0, -1).map((w) => path.posix.normalize(w).replace(/\/$/, '')));
    }
    const copiesAll = sources.includes('.');
    for (const need of needed) {
      if (!copiesAll && !sources.includes(need)) problems.push(`${file}: does not COPY ${need}`);
    }
    if (copiesAll && !(repo.dockerignore ?? '').split('\n').some((l) => /^\/?node_modules\/?$/.test(l.trim()))) {
      problems.push(`${file}: COPY . without a .dockerignore that excludes node_modules`);
    }
  }
  return problems;
}

// ---------------------------------------------------------------- mutation helpers

function clone<T>(v: T): T {
  return structuredClone(v);
}

function mutateService(repo: Repo, name: string, edit: (svc: Obj) => void): Repo {
  const copy: Repo = { ...repo, compose: clone(repo.compose) };
  const svc = services(copy).get(name);
  if (!svc) throw new Error(`no service ${name}`);
  edit(svc);
  return copy;
}

function mutateDockerfile(repo: Repo, edit: (text: string) => string): Repo {
  const dockerfiles = new Map<string, string>();
  for (const [k, v] of repo.dockerfiles) dockerfiles.set(k, edit(v));
  return { ...repo, dockerfiles };
}

const repo = loadRepo();

// ---------------------------------------------------------------- tests

test('docker-compose.yml parses and defines the test and demo services', (t) => {
  t.true(isObj(repo.compose), 'docker-compose.yml is not a YAML mapping');
  t.deepEqual(ruleServicesPresent(repo), []);
  const noDemo = mutateService(repo, 'test', () => {});
  if (isObj(noDemo.compose) && isObj(noDemo.compose['services'])) delete noDemo.compose['services']['demo'];
  t.deepEqual(ruleServicesPresent(noDemo), ['service "demo" is missing']);
  t.throws(() => parse('services:\n  test: [unclosed\n'), undefined, 'broken YAML must not parse');
});

test('every service builds a Dockerfile that exists', (t) => {
  t.true(repo.dockerfiles.size > 0, 'no Dockerfile in the repository root');
  t.deepEqual(ruleDockerfilesExist(repo), []);
  const broken = mutateService(repo, 'test', (svc) => {
    svc['build'] = { context: '.', dockerfile: 'Dockerfile.missing' };
  });
  t.deepEqual(ruleDockerfilesExist(broken), ['service "test" builds Dockerfile.missing, which does not exist']);
  const noBuild = mutateService(repo, 'demo', (svc) => {
    delete svc['build'];
  });
  t.deepEqual(ruleDockerfilesExist(noBuild), ['service "demo" has no build section']);
});

test('every npm script and node entry point the services run exists', (t) => {
  t.deepEqual(ruleNpmScriptsExist(repo), []);
  t.deepEqual(npmScriptsIn('npm run build && npm test && npm run --silent test:unit'), ['build', 'test', 'test:unit']);
  const missingScript = mutateService(repo, 'test', (svc) => {
    svc['command'] = ['npm', 'run', 'no-such-script'];
  });
  t.deepEqual(ruleNpmScriptsExist(missingScript), [
    'service "test" runs npm script "no-such-script", which package.json does not define',
  ]);
  // A script that npm test itself runs must exist too.
  const scripts = isObj(repo.packageJson['scripts']) ? { ...repo.packageJson['scripts'] } : {};
  const firstInner = npmScriptsIn(String(scripts['test'] ?? ''))[0];
  t.not(firstInner, undefined, 'npm test runs no other npm script (expected build + test:unit + test:mount)');
  if (firstInner !== undefined) {
    delete scripts[firstInner];
    const pkg = { ...repo.packageJson, scripts };
    t.true(ruleNpmScriptsExist({ ...repo, packageJson: pkg }).some((p) => p.includes(`"${firstInner}"`)));
  }
  const missingEntry = mutateService(repo, 'demo', (svc) => {
    svc['command'] = 'node dist/scripts/no-such-demo.js';
  });
  t.deepEqual(ruleNpmScriptsExist(missingEntry), [
    'service "demo" runs node dist/scripts/no-such-demo.js, but scripts/no-such-demo.ts does not exist',
  ]);
});

for (const name of ['test', 'demo']) {
  test(`the ${name} service may mount FUSE and overlayfs`, (t) => {
    t.deepEqual(ruleFusePrivileges(repo, name), []);
    const unprivileged = mutateService(repo, name, (svc) => {
      delete svc['privileged'];
      delete svc['cap_add'];
    });
    t.deepEqual(ruleFusePrivileges(unprivileged, name), [
      `service "${name}" is neither privileged nor has SYS_ADMIN with apparmor:unconfined`,
    ]);
    const capsOnly = mutateService(repo, name, (svc) => {
      svc['privileged'] = false;
      svc['cap_add'] = ['SYS_ADMIN'];
      svc['security_opt'] = ['apparmor:unconfined'];
    });
    t.deepEqual(ruleFusePrivileges(capsOnly, name), []);
    const noDevice = mutateService(repo, name, (svc) => {
      svc['devices'] = [];
    });
    t.deepEqual(ruleFusePrivileges(noDevice, name), [`service "${name}" does not get /dev/fuse in devices`]);
  });
}

test('the test service runs npm test with CI=true and TMPDIR on a tmpfs or volume', (t) => {
  t.deepEqual(ruleTestEnvironment(repo), []);
  const noCi = mutateService(repo, 'test', (svc) => {
    const env = environment(svc);
    env.delete('CI');
    svc['environment'] = Object.fromEntries(env);
  });
  t.deepEqual(ruleTestEnvironment(noCi), ['service "test" sets CI=(unset), not CI=true']);
  const tmpOnRoot = mutateService(repo, 'test', (svc) => {
    svc['environment'] = [...environment(svc)].map(([k, v]) => `${k}=${k === 'TMPDIR' ? '/var/tmp' : v}`);
  });
  t.true(ruleTestEnvironment(tmpOnRoot).some((p) => p.startsWith('service "test" has TMPDIR=/var/tmp, which is not on a tmpfs or volume')));
  const noScratch = mutateService(repo, 'test', (svc) => {
    delete svc['tmpfs'];
    delete svc['volumes'];
  });
  t.true(ruleTestEnvironment(noScratch).some((p) => p.includes('is not on a tmpfs or volume (none)')));
  const onVolume = mutateService(repo, 'test', (svc) => {
    delete svc['tmpfs'];
    svc['volumes'] = [{ type: 'volume', source: 'scratch', target: environment(svc).get('TMPDIR') ?? '/x' }];
  });
  t.deepEqual(ruleTestEnvironment(onVolume), []);
  const otherCommand = mutateService(repo, 'test', (svc) => {
    svc['command'] = ['node', 'dist/scripts/demo.js'];
  });
  t.deepEqual(ruleTestEnvironment(otherCommand), ['service "test" does not run npm test']);
});

test('the Dockerfile starts from node:20, installs libfuse2 and the FUSE tools, and builds', (t) => {
  t.deepEqual(ruleDockerfileContents(repo), []);
  for (const pkg of REQUIRED_APT) {
    const without = mutateDockerfile(repo, (text) => text.replace(new RegExp(`(?<=\\s)${pkg}(?=\\s)`, 'g'), ''));
    t.true(
      ruleDockerfileContents(without).some((p) => p.endsWith(`does not apt-get install ${pkg}`)),
      `removing ${pkg} from the Dockerfile went unnoticed`,
    );
  }
  // A package merely mentioned in a comment does not count.
  t.false(aptPackages('# apt-get install libfuse2\nRUN apt-get install -y attr\n').has('libfuse2'));
  t.deepEqual([...aptPackages('RUN apt-get update \\\n && apt-get install -y --no-install-recommends a b=1.2 \\\n && rm -rf x')], ['a', 'b']);
  const oldNode = mutateDockerfile(repo, (text) => text.replace(/^FROM\s+node:20\S*/m, 'FROM node:18-bookworm'));
  t.true(ruleDockerfileContents(oldNode).some((p) => p.includes('FROM node:18-bookworm, not node:20')));
  t.true(REQUIRED_APT.includes('sqlite3') && REQUIRED_APT.includes('util-linux'), 'CI_PACKAGES read from .ci/run');
  const noPatch = mutateDockerfile(repo, (text) => text.replace(/npx patch-package && /g, ''));
  t.true(ruleDockerfileContents(noPatch).some((p) => p.endsWith('without patch-package and scripts/build-native.sh')));
  const noPatchDir = mutateDockerfile(repo, (text) => text.replace(/^COPY patches\/ patches\/$/m, ''));
  t.true(ruleDockerfileContents(noPatchDir).some((p) => p.endsWith('does not COPY patches/ (the fuse-native patch)')));
  const noBuild = mutateDockerfile(repo, (text) => text.replace(/npm run build/g, 'true'));
  t.true(ruleDockerfileContents(noBuild).some((p) => p.endsWith('does not build (npm run build)')));
});

test('the Dockerfile copies everything npm test needs, and no host node_modules', (t) => {
  t.deepEqual(ruleDockerfileCopies(repo), []);
  const noSrc = mutateDockerfile(repo, (text) => text.replace(/^COPY\s+src\/?\s+\S+\s*$/m, ''));
  t.true(ruleDockerfileCopies(noSrc).some((p) => p.endsWith('does not COPY src')));
  const copyAll = mutateDockerfile(repo, (text) => `${text}\nCOPY . .\n`);
  t.deepEqual(ruleDockerfileCopies({ ...copyAll, dockerignore: null }), [
    ...[...copyAll.dockerfiles.keys()].map((f) => `${f}: COPY . without a .dockerignore that excludes node_modules`),
  ]);
  t.deepEqual(ruleDockerfileCopies({ ...copyAll, dockerignore: 'dist\nnode_modules\n' }), []);
});
