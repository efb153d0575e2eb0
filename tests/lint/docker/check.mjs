// Checks of docker/ that no generic linter makes (run by tests/lint/docker.sh,
// which copies this file next to its node_modules):
//   * Kubernetes manifests against the API's schemas (kubernetes-models: types,
//     required fields, enums), and strictly: every field must exist in the API
//     (TypeScript's excess-property check on the typed models catches a
//     misspelt `readinesProbe`, which the cluster would silently drop);
//   * the files against each other and against lossd itself: every LOSSD_*
//     variable is one lossd reads (src/server/config.c), ports, probe paths,
//     user ids, threads = CPU limit, grace periods longer than the drain, the
//     build context filter lets every COPY source through, ...
// Usage: node check.mjs REPO_ROOT     Exit status 1 on any problem.
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseAllDocuments, parseDocument } from "yaml";

const require = createRequire(import.meta.url);
const { DockerfileParser } = require("dockerfile-ast");
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(process.argv[2] || ".");
const dockerDir = path.join(root, "docker");
const rel = (p) => path.relative(root, p);

let problems = 0;
let checks = 0;
function check(ok, file, message) {
  checks += 1;
  if (!ok) {
    problems += 1;
    console.log(`${rel(file)}: ${message}`);
  }
  return ok;
}

function readYaml(file) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { uniqueKeys: true });
  const out = [];
  for (const d of docs) {
    for (const e of d.errors) check(false, file, `YAML: ${e.message}`);
    if (d.contents !== null) out.push(d.toJS());
  }
  return out;
}

// Compose-style interpolation with defaults only: ${VAR:-default}, ${VAR-default}.
const interpolate = (v) =>
  String(v).replace(/\$\{[A-Z0-9_]+:?-([^}]*)\}/g, "$1");
const seconds = (d) => {
  const m = /^(\d+)(s|m)?$/.exec(String(d));
  return m ? Number(m[1]) * (m[2] === "m" ? 60 : 1) : NaN;
};

// ---- lossd itself: its options and their defaults ----
const configC = readFileSync(path.join(root, "src/server/config.c"), "utf8");
const lossdEnv = new Map();
for (const m of configC.matchAll(/\{"([a-z-]+)", "(LOSSD_[A-Z_]+)"[^}]*?"([^"]*)",\s*\n?\s*"/g))
  lossdEnv.set(m[2], m[3]);
check(lossdEnv.size >= 10, path.join(root, "src/server/config.c"), `found only ${lossdEnv.size} LOSSD_ options`);
const defaultTimeout = Number(lossdEnv.get("LOSSD_CONNECTION_TIMEOUT"));

// ---- Dockerfile and its context filter ----
const dockerfilePath = path.join(dockerDir, "Dockerfile");
const df = DockerfileParser.parse(readFileSync(dockerfilePath, "utf8"));
const froms = df.getFROMs();
for (const f of froms)
  check(/^debian:12-slim(@sha256:[0-9a-f]{64})?$/.test(f.getImage()), dockerfilePath,
    `FROM ${f.getImage()}: every stage is debian:12-slim, pinned by that tag`);
check(froms.length === 2 && froms[0].getBuildStage() === "build" && froms[1].getBuildStage() === "runtime",
  dockerfilePath, "two stages, build then runtime");
const finalStart = froms[froms.length - 1].getRange().start.line;
const finalIns = df.getInstructions().filter((i) => i.getRange().start.line >= finalStart);
const kw = (k) => finalIns.filter((i) => i.getKeyword() === k);
const imageEnv = new Map();
for (const e of kw("ENV")) for (const p of e.getProperties()) imageEnv.set(p.getName(), p.getValue());
const imageUser = kw("USER").map((u) => u.getArgumentsContent()).pop() || "";
const [uid, gid] = imageUser.split(":").map(Number);
check(/^\d+:\d+$/.test(imageUser) && uid > 0 && gid > 0, dockerfilePath,
  `USER "${imageUser}": numeric uid:gid, not root (runAsNonRoot can only check a number)`);
check(imageEnv.get("LOSSD_BIND") === "0.0.0.0", dockerfilePath, "ENV LOSSD_BIND=0.0.0.0 in the runtime stage");
const imagePort = imageEnv.get("LOSSD_PORT") || lossdEnv.get("LOSSD_PORT");
check(kw("EXPOSE").some((e) => e.getArguments().some((a) => a.getValue().split("/")[0] === imagePort)),
  dockerfilePath, `EXPOSE ${imagePort} (LOSSD_PORT)`);
for (const name of imageEnv.keys())
  check(lossdEnv.has(name), dockerfilePath, `ENV ${name}: lossd reads no such variable`);
const hc = kw("HEALTHCHECK");
check(hc.length === 1 && /^CMD \[/.test(hc[0].getArgumentsContent()), dockerfilePath, "one HEALTHCHECK, CMD in exec form");
const hcCmd = hc.length ? JSON.parse(hc[0].getArgumentsContent().slice(4))[0] : "";
check(kw("STOPSIGNAL").map((s) => s.getArgumentsContent()).pop() === "SIGTERM", dockerfilePath, "STOPSIGNAL SIGTERM");
check(kw("ENTRYPOINT").map((s) => s.getArgumentsContent()).pop() === '["/usr/local/bin/lossd"]',
  dockerfilePath, 'ENTRYPOINT ["/usr/local/bin/lossd"]');
const labels = new Set(kw("LABEL").flatMap((l) => l.getProperties().map((p) => p.getName())));
for (const l of ["title", "description", "version", "revision", "created", "base.name"])
  check(labels.has(`org.opencontainers.image.${l}`), dockerfilePath, `LABEL org.opencontainers.image.${l}`);
const installed = kw("COPY").flatMap((c) => c.getArguments().slice(0, -1).map((a) => a.getValue()));
check(installed.some((s) => s.endsWith("/lossd-healthcheck")) && hcCmd === "/usr/local/bin/lossd-healthcheck",
  dockerfilePath, "the HEALTHCHECK runs the lossd-healthcheck that the runtime stage installs");
const buildRun = df.getInstructions().filter((i) => i.getKeyword() === "RUN").map((i) => i.getArgumentsContent()).join("\n");
for (const flag of ["-DCMAKE_BUILD_TYPE=Release", "-DLOSSD_BUILD_TESTS=OFF", "--strip"])
  check(buildRun.includes(flag), dockerfilePath, `the build runs CMake with ${flag}`);

// Context sources: COPY without --from, relative to the repository root.
const contextSources = df.getInstructions()
  .filter((i) => i.getKeyword() === "COPY" && !i.getFlags().some((f) => f.getName() === "from"))
  .flatMap((c) => c.getArguments().slice(0, -1).map((a) => a.getValue()));
const ignorePath = path.join(dockerDir, "Dockerfile.dockerignore");
const ignoreLines = readFileSync(ignorePath, "utf8").split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
const allowed = ignoreLines.filter((l) => l.startsWith("!")).map((l) => l.slice(1).replace(/\/$/, ""));
check(ignoreLines[0] === "*", ignorePath, 'an allow-list: the first pattern is "*"');
for (const src of contextSources) {
  const s = src.replace(/\/$/, "");
  check(existsSync(path.join(root, s)), dockerfilePath, `COPY ${src}: no such path in the repository`);
  check(allowed.some((a) => s === a || s.startsWith(`${a}/`)), ignorePath, `COPY ${src} is not let through (add !${src})`);
}
for (const a of allowed) {
  check(existsSync(path.join(root, a)), ignorePath, `!${a}: no such path in the repository`);
  check(contextSources.some((s) => s.replace(/\/$/, "") === a), ignorePath, `!${a}: no COPY uses it`);
}

// ---- compose.yaml and prometheus.yml ----
const composePath = path.join(dockerDir, "compose.yaml");
const [compose] = readYaml(composePath);
const svc = compose?.services?.lossd;
if (check(svc, composePath, "a service named lossd")) {
  check(svc.read_only === true, composePath, "lossd: read_only: true");
  check((svc.cap_drop || []).includes("ALL"), composePath, "lossd: cap_drop: [ALL]");
  check((svc.security_opt || []).includes("no-new-privileges:true"), composePath, "lossd: security_opt: [no-new-privileges:true]");
  check(svc.user === undefined || svc.user === imageUser, composePath, `lossd: user is the image's (${imageUser})`);
  check(existsSync(path.join(dockerDir, svc.build.context, svc.build.dockerfile)), composePath, "lossd: build.context + build.dockerfile name docker/Dockerfile");
  const env = svc.environment || {};
  for (const name of Object.keys(env)) check(lossdEnv.has(name), composePath, `lossd: ${name}: lossd reads no such variable`);
  const port = interpolate(env.LOSSD_PORT ?? imagePort);
  check((svc.ports || []).some((p) => String(p).split(":").pop() === port), composePath, `lossd: a published port targets ${port}`);
  const test = svc.healthcheck?.test || [];
  check(test[0] === "CMD" && test[1] === hcCmd, composePath, `lossd: healthcheck runs ${hcCmd}`);
  const timeout = Number(interpolate(env.LOSSD_CONNECTION_TIMEOUT ?? defaultTimeout));
  check(seconds(svc.stop_grace_period) > timeout, composePath,
    `lossd: stop_grace_period ${svc.stop_grace_period} must exceed the drain (LOSSD_CONNECTION_TIMEOUT ${timeout} s)`);
  const cpus = Number(interpolate(svc.deploy?.resources?.limits?.cpus));
  const threads = Number(interpolate(env.LOSSD_THREADS));
  check(cpus > 0 && threads === Math.ceil(cpus), composePath, `lossd: LOSSD_THREADS (${threads}) = the CPU limit (${cpus})`);
  check(svc.deploy?.resources?.limits?.memory, composePath, "lossd: a memory limit");
}
const promPath = path.join(dockerDir, "prometheus.yml");
const [prom] = readYaml(promPath);
const job = (prom?.scrape_configs || []).find((j) => j.job_name === "lossd");
if (check(job, promPath, "a scrape job named lossd")) {
  check((job.metrics_path ?? "/metrics") === "/metrics", promPath, "lossd: metrics_path /metrics");
  const targets = (job.static_configs || []).flatMap((s) => s.targets || []);
  check(targets.includes(`lossd:${imagePort}`), promPath, `lossd: target lossd:${imagePort} (the compose service)`);
}
const promSvc = compose?.services?.prometheus;
if (promSvc)
  check((promSvc.volumes || []).some((v) => v.startsWith("./prometheus.yml:")), composePath, "prometheus: mounts ./prometheus.yml");

// ---- Kubernetes ----
const k8sDir = path.join(dockerDir, "k8s");
const objects = [];
for (const f of readdirSync(k8sDir).sort()) {
  const file = path.join(k8sDir, f);
  if (!/\.ya?ml$/.test(f)) {
    check(false, file, "not a YAML manifest");
    continue;
  }
  for (const doc of readYaml(file)) objects.push({ file, doc });
}
// Schema validation (ajv, generated from the Kubernetes OpenAPI document).
const modelPath = (apiVersion) => (apiVersion.includes("/") ? apiVersion : `v1`);
for (const { file, doc } of objects) {
  const where = `${doc?.kind ?? "?"} ${doc?.metadata?.name ?? "?"}`;
  if (!check(doc && doc.apiVersion && doc.kind, file, "apiVersion and kind")) continue;
  let Model;
  try {
    Model = require(`kubernetes-models/${modelPath(doc.apiVersion)}/${doc.kind}`)[doc.kind];
  } catch {
    Model = undefined;
  }
  if (!check(Model, file, `${where}: ${doc.apiVersion} ${doc.kind} is not a Kubernetes kind`)) continue;
  try {
    new Model(doc).validate();
    check(true, file, "");
  } catch (e) {
    check(false, file, `${where}: schema: ${e.message}`);
  }
}
// Strict fields: the same objects as TypeScript literals of the API's types.
const tsDir = path.join(here, "k8s-types");
rmSync(tsDir, { recursive: true, force: true });
mkdirSync(tsDir, { recursive: true });
const tsFiles = objects.map(({ file, doc }, n) => {
  const name = path.join(tsDir, `m${n}.ts`);
  writeFileSync(name,
    `// ${rel(file)}: ${doc.kind} ${doc.metadata?.name}\n` +
    `import type { I${doc.kind} } from "kubernetes-models/${modelPath(doc.apiVersion)}/${doc.kind}";\n` +
    `export const m: I${doc.kind} = ${JSON.stringify(doc, null, 2)};\n`);
  return { name, file, doc };
});
writeFileSync(path.join(tsDir, "tsconfig.json"), JSON.stringify({
  compilerOptions: {
    noEmit: true, strict: true, skipLibCheck: true, types: [], target: "es2020",
    module: "commonjs", moduleResolution: "node10", typeRoots: [], baseUrl: here,
    paths: { "*": [path.join(here, "node_modules/*")] },
  },
  files: tsFiles.map((t) => t.name),
}, null, 2));
const tsc = spawnSync(process.execPath, [path.join(here, "node_modules/typescript/bin/tsc"),
  "-p", path.join(tsDir, "tsconfig.json")], { encoding: "utf8", cwd: here });
const tsOut = (tsc.stdout + tsc.stderr).trim();
checks += 1;
if (tsc.status !== 0) {
  problems += 1;
  for (const line of tsOut.split("\n")) {
    const m = /k8s-types\/m(\d+)\.ts\((\d+),\d+\): (.*)/.exec(line);
    if (m) {
      const t = tsFiles[Number(m[1])];
      console.log(`${rel(t.file)}: ${t.doc.kind} ${t.doc.metadata?.name}: ${m[3]}`);
    } else if (line.trim()) console.log(`tsc: ${line}`);
  }
}

// Consistency of the objects with each other, with the image and with lossd.
const byKind = (k) => objects.filter((o) => o.doc.kind === k);
const matches = (selector, labels) => Object.entries(selector || {}).every(([k, v]) => labels?.[k] === v);
for (const { file, doc } of byKind("Deployment")) {
  const pod = doc.spec.template;
  const c = pod.spec.containers.find((x) => x.name === "lossd");
  if (!check(c, file, "a container named lossd")) continue;
  check(matches(doc.spec.selector.matchLabels, pod.metadata.labels), file, "the selector matches the pod labels");
  const env = new Map((c.env || []).map((e) => [e.name, e]));
  for (const name of env.keys()) check(lossdEnv.has(name), file, `env ${name}: lossd reads no such variable`);
  const val = (name) => env.get(name)?.value ?? imageEnv.get(name) ?? lossdEnv.get(name);
  check(val("LOSSD_BIND") === "0.0.0.0", file, "LOSSD_BIND 0.0.0.0 (all interfaces of the pod)");
  const port = Number(val("LOSSD_PORT"));
  const cport = (c.ports || []).find((p) => p.containerPort === port);
  check(cport, file, `a containerPort ${port} (LOSSD_PORT)`);
  const probePort = (p) => p?.httpGet?.port === port || (cport && p?.httpGet?.port === cport.name);
  check(c.livenessProbe?.httpGet?.path === "/healthz" && probePort(c.livenessProbe), file, "livenessProbe: GET /healthz on lossd's port");
  check(c.readinessProbe?.httpGet?.path === "/readyz" && probePort(c.readinessProbe), file, "readinessProbe: GET /readyz on lossd's port");
  const limit = c.resources?.limits?.cpu;
  const cpu = typeof limit === "string" && limit.endsWith("m") ? Number(limit.slice(0, -1)) / 1000 : Number(limit);
  check(cpu > 0 && c.resources?.limits?.memory, file, "CPU and memory limits");
  const t = env.get("LOSSD_THREADS");
  const ref = t?.valueFrom?.resourceFieldRef;
  check((ref && ref.resource === "limits.cpu" && String(ref.divisor) === "1" && (ref.containerName ?? c.name) === c.name) ||
    Number(t?.value) === Math.ceil(cpu), file, "LOSSD_THREADS = the CPU limit (resourceFieldRef limits.cpu, divisor 1)");
  const preStop = c.lifecycle?.preStop?.exec?.command || [];
  const sleep = preStop[0]?.endsWith("sleep") ? Number(preStop[1]) : (c.lifecycle?.preStop?.sleep?.seconds ?? 0);
  const timeout = Number(val("LOSSD_CONNECTION_TIMEOUT"));
  check(pod.spec.terminationGracePeriodSeconds > sleep + timeout, file,
    `terminationGracePeriodSeconds ${pod.spec.terminationGracePeriodSeconds} must exceed preStop (${sleep} s) + drain (${timeout} s)`);
  const sc = { ...pod.spec.securityContext, ...c.securityContext };
  check(sc.runAsNonRoot === true, file, "securityContext.runAsNonRoot: true");
  check(c.securityContext?.readOnlyRootFilesystem === true, file, "securityContext.readOnlyRootFilesystem: true");
  check(c.securityContext?.allowPrivilegeEscalation === false, file, "securityContext.allowPrivilegeEscalation: false");
  check((c.securityContext?.capabilities?.drop || []).includes("ALL"), file, "securityContext.capabilities.drop: [ALL]");
  check(sc.runAsUser === undefined || sc.runAsUser === uid, file, `runAsUser is the image's user (${uid})`);
  for (const svc of byKind("Service")) {
    if (!matches(svc.doc.spec.selector, pod.metadata.labels)) continue;
    for (const p of svc.doc.spec.ports)
      check(p.targetPort === port || p.targetPort === cport?.name, svc.file, `port ${p.name}: targetPort is lossd's port (${port} or "${cport?.name}")`);
  }
  for (const svc of byKind("Service"))
    check(matches(svc.doc.spec.selector, pod.metadata.labels), svc.file, `Service ${svc.doc.metadata.name}: the selector matches no Deployment's pods`);
  for (const pdb of byKind("PodDisruptionBudget"))
    check(matches(pdb.doc.spec.selector.matchLabels, pod.metadata.labels), pdb.file, "the selector matches lossd's pods");
  for (const hpa of byKind("HorizontalPodAutoscaler")) {
    const r = hpa.doc.spec.scaleTargetRef;
    check(r.kind === "Deployment" && r.name === doc.metadata.name, hpa.file, `scaleTargetRef is Deployment ${doc.metadata.name}`);
    check(c.resources?.requests?.cpu, file, "a CPU request (the HPA's utilization is relative to it)");
    for (const pdb of byKind("PodDisruptionBudget"))
      check(pdb.doc.spec.maxUnavailable === undefined || pdb.doc.spec.maxUnavailable < hpa.doc.spec.minReplicas, pdb.file,
        "maxUnavailable below the HPA's minReplicas: one pod always serves");
  }
}
check(byKind("Deployment").length === 1 && byKind("Service").length >= 1, k8sDir, "one Deployment and a Service");

// ---- README: every docker/ path it names exists ----
const readmePath = path.join(dockerDir, "README.md");
const readme = readFileSync(readmePath, "utf8");
for (const m of new Set(readme.match(/\b(?:docker|tests\/lint)\/[A-Za-z0-9_./-]*[A-Za-z0-9_-]/g) || []))
  check(existsSync(path.join(root, m)), readmePath, `names ${m}, which does not exist`);

console.log(`check.mjs: ${checks} checks, ${problems} problem${problems === 1 ? "" : "s"}`);
process.exit(problems ? 1 : 0);
