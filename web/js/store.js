// What the tab knows about the user's photos and jobs, shared by every view. Live updates patch it; a view
// re-renders through `useStore` when something it shows changes.
import { useEffect, useState } from "./lib.js";

function makeStore() {
  const items = new Map();
  const listeners = new Set();
  let version = 0;
  const notify = (id) => {
    version += 1;
    listeners.forEach((fn) => fn(id));
  };
  return {
    get: (id) => items.get(id),
    put(record, key) {
      const id = record[key];
      items.set(id, { ...(items.get(id) || {}), ...record });
      notify(id);
      return items.get(id);
    },
    patch(id, fields) {
      if (!items.has(id)) return undefined;
      items.set(id, { ...items.get(id), ...fields });
      notify(id);
      return items.get(id);
    },
    remove(id) {
      items.delete(id);
      notify(id);
    },
    subscribe(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    version: () => version,
  };
}

export const images = makeStore();
export const jobs = makeStore();

export const putImage = (record) => images.put(record, "image_id");
export const putJob = (record) => jobs.put(record, "job_id");

/** Re-render the calling component whenever `store` changes. */
export function useStore(store) {
  const [, setVersion] = useState(store.version());
  useEffect(() => store.subscribe(() => setVersion(store.version())), [store]);
}

// Image states after which nothing more happens to a photo without a new upload.
export const FINAL_IMAGE_STATES = new Set([
  "classified",
  "classification_failed",
  "classification_skipped",
  "rejected",
  "failed",
]);
export const IMAGE_STATES = [
  "pending_upload",
  "processing",
  "processed",
  "classified",
  "classification_failed",
  "classification_skipped",
  "rejected",
  "failed",
];
export const FINAL_JOB_STATES = new Set(["completed", "failed", "cancelled"]);
export const CATEGORIES = [
  ["social_activities", "社交活动", "Social activities"],
  ["pets", "宠物萌照", "Pets"],
  ["single_person", "单人照片", "Single person"],
  ["foods", "美食记录", "Food"],
  ["travel_scenery", "旅行风景", "Travel & scenery"],
  ["screenshot", "手机截图", "Screenshot"],
  ["idcard", "证件照", "ID card"],
  ["other", "其它", "Other"],
].map(([category, label_zh, label_en]) => ({ category, label_zh, label_en }));
