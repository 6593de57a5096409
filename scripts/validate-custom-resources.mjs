// Validates the custom resources in rendered manifests (a JSON array of documents) against
// their CRD schemas, which kubernetes-validate does not have: KEDA's ScaledObject and the
// Prometheus Operator's ServiceMonitor, through the models of the kubernetes-models project.
// Usage: node validate-custom-resources.mjs <tools/node> <manifests.json>
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [toolsNode, manifestsPath] = process.argv.slice(2);
const load = (path) => import(pathToFileURL(join(toolsNode, "node_modules", path)).href);

const models = {
  "keda.sh/v1alpha1/ScaledObject": (await load("@kubernetes-models/keda/keda.sh/v1alpha1/index.js")).ScaledObject,
  "monitoring.coreos.com/v1/ServiceMonitor": (await load("@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js")).ServiceMonitor,
};

let failures = 0;
for (const doc of JSON.parse(readFileSync(manifestsPath, "utf8"))) {
  const key = `${doc.apiVersion}/${doc.kind}`;
  const Model = models[key];
  if (!Model) continue; // a built-in kind: kubernetes-validate's job
  try {
    new Model(doc).validate();
    console.log(`INFO ${key} ${doc.metadata.name} passed`);
  } catch (error) {
    failures += 1;
    console.log(`ERROR ${key} ${doc.metadata.name}: ${error.message}`);
  }
}
process.exit(failures ? 1 : 0);
